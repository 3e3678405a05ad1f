"""What GPT Actions allow, as ChatGPT documents it: the one place these numbers live.

Sources (read 2026-11; OpenAI notes they "are subject to change"):
- PRODUCTION: https://developers.openai.com/api/docs/actions/production
- FILES: https://developers.openai.com/api/docs/actions/sending-files
- AUTH: https://developers.openai.com/api/docs/actions/authentication
"""

from __future__ import annotations

from typing import Final

# PRODUCTION, "Timeouts": 45 seconds round trip for API calls.
ROUND_TRIP_SECONDS: Final = 45.0
# PRODUCTION, "Additional limitations": request and response payloads must each be
# under 100,000 characters.
MAX_PAYLOAD_CHARS: Final = 100_000
# Our own target below that cap, so headers-free JSON plus the hint always fit.
ANSWER_CHARS: Final = 95_000
# PRODUCTION, "Open API specification limits": 300 characters for each endpoint
# description/summary, 700 for each parameter description.
MAX_SUMMARY_CHARS: Final = 300
MAX_PARAM_DESCRIPTION_CHARS: Final = 700
# Not on the production page: the GPT editor refuses a schema with more than 30
# operations (DESIGN.md keeps us at or under it).
MAX_OPERATIONS: Final = 30
# FILES, "Sending files": up to ten files per POST, as links valid for five minutes.
MAX_FILES_IN: Final = 10
FILE_LINK_SECONDS: Final = 300
# FILES, "Returning files": up to 10 files per answer, each up to 10 MB; URLs are
# fetched by ChatGPT, which gives each fetch about 10 seconds.
MAX_FILES_OUT: Final = 10
MAX_FILE_OUT_BYTES: Final = 10 * 1024 * 1024
FILE_FETCH_SECONDS: Final = 10.0
# FILES: the example links are served from files.oaiusercontent.com; other
# *.oaiusercontent.com hosts serve newer uploads. RELAY_ACTIONS_FILE_HOSTS overrides.
DEFAULT_FILE_HOSTS: Final = ("files.oaiusercontent.com", "*.oaiusercontent.com")
# PRODUCTION, "Rate limits": ChatGPT respects 429 and backs off; we always say when
# to come back, bounded so a client never waits past a round trip.
DEFAULT_RETRY_AFTER: Final = 5
MAX_RETRY_AFTER: Final = 60
