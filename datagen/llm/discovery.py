"""What an OpenAI-compatible server says of itself before any work: ``GET /models`` (the models
it serves, and from their ``owned_by`` what kind of server it is), and how many requests it
serves at once where it tells (llama-cpp-python's server: one, it holds a lock around the model;
llama.cpp's own server: ``total_slots`` in ``GET /props``). No answer is not an error: the
requests themselves will tell."""

from __future__ import annotations

from dataclasses import dataclass

from datagen.llm.capabilities import LLAMA_CPP_PYTHON, SERVER_MARKS
from datagen.llm.openai_wire import httpx



@dataclass(frozen=True)
class Discovery:
    models: list[str]
    server: str | None  # "llama.cpp", "vllm", ... (capabilities.SERVER_MARKS), or None
    json_dialect: int | None  # the response_format form it takes, when it is not the default
    slots: int | None  # requests it serves at once, where it says


def discover(base_url: str, api_key: str, timeout: float) -> Discovery | None:
    """What the server at ``base_url`` lists, or None when it lists nothing readable."""
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        with httpx.Client(timeout=timeout) as client:
            response = client.get(base_url.rstrip("/") + "/models", headers=headers)
        listing = response.json() if response.status_code == 200 else None
    except Exception:  # noqa: BLE001 - any failure means "unknown": the requests will tell
        return None
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        return None
    ids = [str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id") is not None]
    owners = {str(m.get("owned_by", "")).lower() for m in data if isinstance(m, dict)}
    server = next((kind for kind, marks in SERVER_MARKS if owners & marks), None)
    return Discovery(ids, server, 1 if LLAMA_CPP_PYTHON in owners else None, server_slots(base_url, headers, owners, timeout))


def server_slots(base_url: str, headers: dict[str, str], owners: set[str], timeout: float) -> int | None:
    if LLAMA_CPP_PYTHON in owners:
        return 1
    if "llamacpp" not in owners:
        return None
    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        with httpx.Client(timeout=timeout) as client:
            props = client.get(root + "/props", headers=headers).json()
        slots = props.get("total_slots") if isinstance(props, dict) else None
    except Exception:  # noqa: BLE001 - unknown: keep the configured concurrency
        return None
    return slots if isinstance(slots, int) and slots > 0 else None
