"""The results table: raw figures per target and ratios to direct, plus the acceptance checks."""

from dataclasses import dataclass, field

TARGETS = ("direct", "nginx", "relay")

# Acceptance thresholds from issue 2, point 7 (and 6 for memory).
MIN_RPS_VS_NGINX = 0.12
MAX_ADDED_P50_MS = 0.3
MAX_ADDED_TTFE_MS = 1.0
MAX_RSS_GROWTH_MB = 20.0


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Results:
    rps: dict[str, float] = field(default_factory=dict)
    rps_errors: dict[str, int] = field(default_factory=dict)
    p50: dict[str, float] = field(default_factory=dict)
    p99: dict[str, float] = field(default_factory=dict)
    ttfe: dict[str, float] = field(default_factory=dict)
    upload_seconds: dict[str, float] = field(default_factory=dict)
    upload_intact: dict[str, bool] = field(default_factory=dict)
    rss_before_mb: float | None = None
    rss_peak_mb: float | None = None
    rss_kernel_peak_mb: float | None = None

    @property
    def rss_growth_mb(self) -> float | None:
        """Growth to the higher of the sampled peak and the kernel's high-water mark."""
        if self.rss_before_mb is None or self.rss_peak_mb is None:
            return None
        return max(self.rss_peak_mb, self.rss_kernel_peak_mb or 0.0) - self.rss_before_mb


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.3f}x"


def _delta(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a - b:+.3f}"


def table(results: Results) -> str:
    header = ("figure", "direct", "nginx", "relay", "relay/direct", "relay/nginx", "nginx/direct")
    rows: list[tuple[str, ...]] = [header]

    def ratio_row(name: str, values: dict[str, float], fmt: str) -> None:
        if not values:
            return
        d, n, r = (values.get(t) for t in TARGETS)
        rows.append(
            (
                name,
                _num(d, fmt),
                _num(n, fmt),
                _num(r, fmt),
                _ratio(r, d),
                _ratio(r, n),
                _ratio(n, d),
            )
        )

    def added_row(name: str, values: dict[str, float]) -> None:
        d, n, r = (values.get(t) for t in TARGETS)
        if d is None:
            return
        rows.append((name, "0", _delta(n, d), _delta(r, d), "", "", ""))

    ratio_row("requests/s, 32 conns, 1 KB JSON", results.rps, ".0f")
    ratio_row("latency p50 ms, 1 conn", results.p50, ".3f")
    if results.p50:
        added_row("  added p50 ms over direct", results.p50)
    ratio_row("latency p99 ms, 1 conn", results.p99, ".3f")
    if results.p99:
        added_row("  added p99 ms over direct", results.p99)
    ratio_row("SSE first event, median ms", results.ttfe, ".3f")
    if results.ttfe:
        added_row("  added ms over direct", results.ttfe)
    ratio_row("upload seconds (multipart)", results.upload_seconds, ".2f")
    if results.rss_peak_mb is not None:
        kernel = _num(results.rss_kernel_peak_mb, ".1f")
        rows.append(("relay RSS MB before", "", "", f"{results.rss_before_mb:.1f}", "", "", ""))
        rows.append(
            ("  peak sampled every 20 ms", "", "", f"{results.rss_peak_mb:.1f}", "", "", "")
        )
        rows.append(("  peak by the kernel (VmHWM)", "", "", kernel, "", "", ""))
        rows.append(("  growth", "", "", f"{results.rss_growth_mb:+.1f}", "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def checks(results: Results) -> list[tuple[str, bool]]:
    """(description, passed) for every acceptance figure this run measured."""
    out: list[tuple[str, bool]] = []
    if "relay" in results.rps and "nginx" in results.rps:
        ratio = results.rps["relay"] / results.rps["nginx"]
        out.append(
            (
                f"requests/s relay/nginx {ratio:.3f}x >= {MIN_RPS_VS_NGINX}x",
                ratio >= MIN_RPS_VS_NGINX,
            )
        )
    if results.rps_errors.get("relay"):
        out.append((f"relay answered {results.rps_errors['relay']} wrk requests badly", False))
    if "relay" in results.p50 and "direct" in results.p50:
        added = results.p50["relay"] - results.p50["direct"]
        out.append(
            (f"added p50 {added:+.3f} ms <= +{MAX_ADDED_P50_MS} ms", added <= MAX_ADDED_P50_MS)
        )
    if "relay" in results.ttfe and "direct" in results.ttfe:
        added = results.ttfe["relay"] - results.ttfe["direct"]
        out.append(
            (
                f"SSE added first-event {added:+.3f} ms <= +{MAX_ADDED_TTFE_MS} ms",
                added <= MAX_ADDED_TTFE_MS,
            )
        )
    growth = results.rss_growth_mb
    if growth is not None:
        out.append(
            (
                f"relay RSS growth {growth:+.1f} MB < {MAX_RSS_GROWTH_MB} MB",
                growth < MAX_RSS_GROWTH_MB,
            )
        )
    for target, intact in results.upload_intact.items():
        out.append((f"upload via {target} reached the upstream byte-identical", intact))
    return out
