"""A custom GPT, simulated: it reads only the served Actions schema, builds a call for every
operation from the schema's examples (filling in, as ChatGPT does at runtime, ids it got back
earlier and the download links of chat files), and gets JSON under 100,000 characters back
within the answer budget for each."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from fakeupstream import FakeUpstream
from linkserver import LinkServer, files_env
from servers import ADMIN, RELAY_KEY, RunningRelay, relay_in_thread
from teamrelay.actions.limits import MAX_PAYLOAD_CHARS
from teamrelay.actions.schema import operations

BUDGET = 5.0
ID = re.compile(r"^(vs_|file-|resp_|batch_)[A-Za-z0-9]+$")
ID_KEYS = ("id", "response_id", "file_id", "vector_store_id", "batch_id", "output_file_id")


@pytest.fixture(scope="module")
def gpt_relay(fake_upstream: FakeUpstream, links: LinkServer) -> Iterator[RunningRelay]:
    env = files_env(links, RELAY_ACTIONS_ANSWER_BUDGET=str(BUDGET))
    with relay_in_thread(fake_upstream.base_url, **env) as running:
        yield running


class Simulator:
    def __init__(self, relay: RunningRelay, links: LinkServer) -> None:
        self.schema = httpx2.get(relay.url + "/openapi.actions.json").json()
        self.server = self.schema["servers"][0]["url"]
        self.links = links
        self.known: dict[str, str] = {}

    def needs(self, value: Any) -> set[str]:
        if isinstance(value, str) and ID.match(value):
            return {ID.match(value).group(1)}  # type: ignore[union-attr]
        if isinstance(value, dict) and "download_link" not in value:
            return set().union(*(self.needs(v) for v in value.values()))
        if isinstance(value, list | tuple):
            return set().union(*(self.needs(v) for v in value))
        return set()

    def fill(self, value: Any) -> Any:
        if isinstance(value, str) and ID.match(value):
            return self.known[ID.match(value).group(1)]  # type: ignore[union-attr]
        if isinstance(value, dict) and "download_link" in value:
            name = str(value.get("name", "chat.txt"))
            self.links.files[name] = b"a chat file\n\nwith two paragraphs\n"
            return {**value, "download_link": self.links.link(f"/f/{name}")}
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        return value

    def learn(self, value: Any) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                if key in ID_KEYS and isinstance(child, str) and ID.match(child):
                    self.known[ID.match(child).group(1)] = child  # type: ignore[union-attr]
                self.learn(child)
        elif isinstance(value, list):
            for child in value:
                self.learn(child)

    def example(
        self, operation: dict[str, Any], required_only: bool = False
    ) -> tuple[dict[str, Any], Any]:
        """The schema's examples; `required_only` keeps just what the schema requires (for a
        body with alternatives, the first way its `anyOf` names)."""
        params = {
            p["name"]: p["example"]
            for p in operation.get("parameters", [])
            if "example" in p and (p.get("required") or not required_only)
        }
        media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        body = media.get("example")
        if required_only and isinstance(body, dict):
            schema = media["schema"]
            needed = set(schema.get("required", []))
            for alternative in schema.get("anyOf", [])[:1] + schema.get("oneOf", [])[:1]:
                needed |= set(alternative.get("required", []))
            assert needed <= set(body), (operation["operationId"], needed - set(body))
            body = {key: value for key, value in body.items() if key in needed}
        return params, body

    def call(
        self, path: str, method: str, operation: dict[str, Any], required_only: bool = False
    ) -> httpx2.Response:
        params, body = self.example(operation, required_only)
        params, body = self.fill(params), self.fill(body)
        for name in re.findall(r"\{(\w+)\}", path):
            path = path.replace("{" + name + "}", str(params.pop(name)))
        headers = (
            {} if operation.get("security") == [] else {"Authorization": f"Bearer {RELAY_KEY}"}
        )
        if body is not None:
            text = json.dumps(body)
            assert len(text) < MAX_PAYLOAD_CHARS
            headers["content-type"] = "application/json"
        return httpx2.request(
            method.upper(),
            self.server + path,
            params=params,
            content=text if body is not None else None,
            headers=headers,
            timeout=60,
        )


def _last(operation: dict[str, Any]) -> bool:
    return bool(re.match(r"(delete|cancel)", operation["operationId"]))


@pytest.mark.parametrize("required_only", [False, True], ids=["examples", "required fields"])
def test_custom_gpt_can_call_every_operation_from_the_schema_alone(
    gpt_relay: RunningRelay, upstream: FakeUpstream, links: LinkServer, required_only: bool
) -> None:
    gpt = Simulator(gpt_relay, links)
    pending = sorted(operations(gpt.schema), key=lambda item: _last(item[2]))
    answered: dict[str, int] = {}
    while pending:
        ready = [
            item
            for item in pending
            if gpt.needs(gpt.example(item[2])) <= set(gpt.known)
            and (not _last(item[2]) or all(_last(other[2]) for other in pending))
        ]
        assert ready, f"no operation can run: {[item[2]['operationId'] for item in pending]}"
        path, method, operation = ready[0]
        pending.remove(ready[0])
        started = time.monotonic()
        answer = gpt.call(path, method, operation, required_only)
        took = time.monotonic() - started
        name = operation["operationId"]
        assert took < BUDGET + 1, name
        assert answer.headers["content-type"].startswith("application/json"), name
        assert len(answer.text) < MAX_PAYLOAD_CHARS, name
        document = answer.json()
        answered[name] = answer.status_code
        if name.startswith("cancel"):
            assert answer.status_code in (200, 400), (name, answer.text)
        else:
            assert answer.status_code == 200, (name, answer.text)
        gpt.learn(document)
    assert len(answered) == len(list(operations(gpt.schema)))


def test_action_calls_land_in_the_ledger_with_their_usage(
    gpt_relay: RunningRelay, upstream: FakeUpstream
) -> None:
    def counted(text: str, name: str, **labels: str) -> float:
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    before = httpx2.get(gpt_relay.url + "/metrics", headers=ADMIN).text
    answer = httpx2.post(
        gpt_relay.url + "/actions/ask",
        json={"input": "one two three", "model": "gpt-4.1"},
        headers={"Authorization": f"Bearer {RELAY_KEY}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    after = httpx2.get(gpt_relay.url + "/metrics", headers=ADMIN).text
    labels = {"operation": "actions.askModel", "status": "200"}
    requests = "teamrelay_requests_total"
    assert counted(after, requests, **labels) - counted(before, requests, **labels) == 1
    tokens = "teamrelay_tokens_total"
    used = answer.json()["usage"]["input_tokens"]
    assert (
        counted(after, tokens, kind="input", model="gpt-4.1")
        - counted(before, tokens, kind="input", model="gpt-4.1")
        == used
    )
