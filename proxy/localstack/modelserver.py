"""A deterministic OpenAI-compatible model server for tests and local runs.

It stands in for an LLM provider (OpenAI), never for the upstream: agent-memory-server,
pointed at it with ``OPENAI_API_BASE`` (see ``upstream_llm_env``), embeds, extracts,
summarizes and merges through it exactly as it would through OpenAI, and gets answers in
the formats its prompts ask for (read from agent-memory-server 0.14.0's source):

- embeddings: a bag of words, each word a hash-seeded random vector, summed and
  normalized, so equal texts get equal vectors and texts sharing words are near;
- discrete memory extraction (``{"memories": [...]}``): one semantic memory per sentence
  of each user line of the conversation; text without role lines (a memory's own text,
  re-offered for extraction) yields none, since it already is a memory;
- progressive summarization of working memory: ``SUMMARY: <n> messages. Latest: ...``,
  with n counting the messages this and every earlier summary covered;
- topics and entities (JSON), query optimization, memory merging, summary views.

``GET /stats`` counts requests by kind so tests can assert which calls the upstream made.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import math
import re
import struct
import sys
import time
from collections import Counter
from typing import Any

from aiohttp import web

from proxy.localstack.processes import ProcessGroup, Service, free_port, http_ok

DEFAULT_DIM = 1536  # text-embedding-3-small, the upstream's default embedding model
MODELS = ("gpt-5", "gpt-5-mini", "gpt-4o-mini", "text-embedding-3-small")

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'_-]*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# "[USER]: ..." in a thread sent for extraction, "user: ..." in a message memory's text
_ROLE_LINE = re.compile(r"^\s*(?:\[(\w+)\]|(user|assistant|system|tool)):\s?(.*)$", re.IGNORECASE)
_STOP = frozenset("""
a an the and or but if so of to in on at by for with from as into about than then there
i me my mine we us our you your he him his she her it its they them their this that these
those is am are was were be been being do does did have has had will would can could should
shall may might must not no yes just also very too what which who whom when where why how
""".split())
STATS_KEY = web.AppKey("stats", Counter[str])
DIM_KEY = web.AppKey("dim", int)


# --- embeddings -------------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
def _word_vector(word: str, dim: int) -> tuple[float, ...]:
    raw = hashlib.shake_256(word.encode()).digest(2 * dim)
    return tuple(v / 32768.0 for v in struct.unpack(f"<{dim}h", raw))


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def embed(text: str, dim: int = DEFAULT_DIM) -> list[float]:
    """A unit vector: the sum of the text's content-word vectors (the whole text if none)."""
    acc = [0.0] * dim
    for word in content_words(text) or [text]:
        for i, v in enumerate(_word_vector(word, dim)):
            acc[i] += v
    norm = math.sqrt(sum(x * x for x in acc)) or 1.0
    return [x / norm for x in acc]


# --- chat completions: classify the prompt, answer in its format -------------------------


def classify(prompt: str) -> str:
    p = prompt.lower()
    if any(m in p for m in ("extracted memories:", "extracted preferences:",
                            "conversation summarizer")):
        return "extraction"
    if "new lines of conversation:" in p and "new summary:" in p:
        return "summary"
    if "extract named entities" in p:
        return "entities"
    if re.search(r"extract the top \d+ topics", p):
        return "topics"
    if "memory merging assistant" in p:
        return "merge"
    if "optimized query:" in p:
        return "query"
    if "\nmemories:\n" in p and "group:" in p:
        return "summary_view"
    return "other"


def _last_section(prompt: str, start: str, ends: tuple[str, ...]) -> str:
    """Text after the last ``start`` marker, up to the first of ``ends`` after it."""
    at = prompt.rfind(start)
    if at < 0:
        return ""
    body = prompt[at + len(start):]
    cut = min((i for e in ends if (i := body.find(e)) >= 0), default=len(body))
    return body[:cut].strip()


def user_sentences(conversation: str) -> list[str]:
    sentences: list[str] = []
    for line in conversation.splitlines():
        m = _ROLE_LINE.match(line)
        if m and (m.group(1) or m.group(2) or "").lower() == "user":
            sentences += [s.strip() for s in _SENTENCE_END.split(m.group(3)) if s.strip()]
    return sentences


def top_words(text: str, k: int) -> list[str]:
    counts = Counter(w for w in content_words(text) if len(w) > 2 and not w.isdigit())
    return [w for w, _ in sorted(counts.items(), key=lambda wc: -wc[1])[:k]]


def entities(text: str) -> list[str]:
    """Capitalized words that do not start a sentence (so "Paris", not "My")."""
    found: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        for word in _WORD.findall(sentence)[1:]:
            if word[0].isupper() and word.lower() not in _STOP and word not in found:
                found.append(word)
    return found


def extraction_answer(prompt: str) -> dict[str, Any]:
    text = _last_section(prompt, "Message:", ("STEP-BY-STEP PROCESS:", "Extracted memories:",
                                              "Extracted preferences:", "Return format:"))
    if not text:
        text = _last_section(prompt, "Conversation:", ("Summary:",))
    memories = [{"type": "semantic", "text": s, "topics": top_words(s, 3),
                 "entities": ["User", *entities(s)]} for s in user_sentences(text)]
    return {"memories": memories}


def summary_answer(prompt: str) -> str:
    previous = _last_section(prompt, "Current summary:", ("New lines of conversation:",))
    lines = [ln for ln in _last_section(prompt, "New lines of conversation:",
                                        ("New summary:",)).splitlines() if ln.strip()]
    m = re.match(r"SUMMARY: (\d+) messages", previous)
    covered = (int(m.group(1)) if m else 0) + len(lines)
    latest = lines[0][:80] if lines else ""  # the upstream lists the newest line first
    return f"SUMMARY: {covered} messages. Latest: {latest}"


def chat_answer(kind: str, prompt: str) -> str:
    if kind == "extraction":
        return _json(extraction_answer(prompt))
    if kind == "summary":
        return summary_answer(prompt)
    if kind == "topics":
        k = int(re.search(r"top (\d+) topics", prompt, re.IGNORECASE).group(1))  # type: ignore[union-attr]
        text = _last_section(prompt, "Text:", ("Return a JSON object",))
        return _json({"topics": top_words(text, k)})
    if kind == "entities":
        return _json({"entities": entities(_last_section(prompt, "Text:", ("Return a JSON",)))})
    if kind == "merge":
        block = _last_section(prompt, "The memories:", ("The merged memory:",))
        texts = [re.sub(r"^\d+:\s*", "", ln.strip()) for ln in block.splitlines() if ln.strip()]
        return "; ".join(dict.fromkeys(texts))
    if kind == "query":
        query = _last_section(prompt, "Original query:", ("Optimized query:",))
        return " ".join(content_words(query)) or query
    if kind == "summary_view":
        bullets = [ln for ln in prompt.splitlines() if ln.startswith("- ")]
        return f"SUMMARY VIEW: {len(bullets)} memories."
    return "OK"


def _json(value: Any) -> str:
    return json.dumps(value)


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


# --- HTTP ------------------------------------------------------------------------------


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error"}},
                             status=status)


async def embeddings(request: web.Request) -> web.Response:
    body = await request.json()
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    if not texts or any(not t for t in texts):
        return _error(400, "'$.input' is invalid")
    dim = int(body.get("dimensions") or request.app[DIM_KEY])
    stats = request.app[STATS_KEY]
    stats["embeddings"] += 1
    stats["embedded_texts"] += len(texts)
    data: list[dict[str, Any]] = []
    for i, text in enumerate(texts):
        vector = embed(text if isinstance(text, str) else repr(text), dim)
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    used = sum(_tokens(str(t)) for t in texts)
    return web.json_response({"object": "list", "data": data, "model": body.get("model", ""),
                              "usage": {"prompt_tokens": used, "total_tokens": used}})


async def chat_completions(request: web.Request) -> web.Response:
    body = await request.json()
    if body.get("stream"):
        return _error(400, "this model server answers with stream=false only")
    messages = body.get("messages") or []
    prompt = "\n".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))
    kind = classify(prompt)
    request.app[STATS_KEY][kind] += 1
    request.app[STATS_KEY]["chat"] += 1
    content = chat_answer(kind, prompt)
    used, made = _tokens(prompt), _tokens(content)
    return web.json_response({
        "id": "chatcmpl-" + hashlib.sha1(prompt.encode()).hexdigest()[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": used, "completion_tokens": made,
                  "total_tokens": used + made},
    })


async def models(request: web.Request) -> web.Response:
    request.app[STATS_KEY]["models"] += 1
    return web.json_response({"object": "list", "data": [
        {"id": m, "object": "model", "created": 0, "owned_by": "modelserver"} for m in MODELS]})


async def get_stats(request: web.Request) -> web.Response:
    counts: Counter[str] = request.app[STATS_KEY]
    return web.json_response(dict(counts))


async def reset_stats(request: web.Request) -> web.Response:
    request.app[STATS_KEY].clear()
    return web.json_response({})


def create_app(dim: int = DEFAULT_DIM) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATS_KEY] = Counter()
    app[DIM_KEY] = dim
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/stats", get_stats)
    app.router.add_delete("/stats", reset_stats)
    return app


# --- running it -----------------------------------------------------------------------


def upstream_llm_env(model_server_url: str, extraction_debounce_seconds: int = 1,
                     dim: int = DEFAULT_DIM) -> dict[str, str]:
    """Environment for agent-memory-server 0.14.0 with long-term memory on, every LLM and
    embedding call going to the model server at ``model_server_url`` (no /v1)."""
    return {
        "LONG_TERM_MEMORY": "true",
        "OPENAI_API_BASE": model_server_url + "/v1",  # litellm and the embeddings read it
        "OPENAI_API_KEY": "sk-test",
        "GENERATION_MODEL": "gpt-5",
        "FAST_MODEL": "gpt-5-mini",
        "SLOW_MODEL": "gpt-5",
        "EMBEDDING_MODEL": "text-embedding-3-small",
        "REDISVL_VECTOR_DIMENSIONS": str(dim),
        # the upstream's default is 30 s; an int, and 0 would make its SETEX fail
        "EXTRACTION_DEBOUNCE_SECONDS": str(extraction_debounce_seconds),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list at import
    }


def start_model_server(group: ProcessGroup, name: str = "model-server",
                       port: int | None = None, dim: int = DEFAULT_DIM) -> Service:
    """The model server as a process of ``group``; its ``url`` has no /v1."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "proxy.localstack.modelserver", "--port", str(port),
           "--dim", str(dim)]
    return group.start(name, cmd, url, http_ok(url + "/stats"), timeout=30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--dim", type=int, default=DEFAULT_DIM, help="embedding dimension")
    args = parser.parse_args(argv)
    port = args.port or free_port()
    print(f"model server on http://127.0.0.1:{port}/v1", flush=True)
    web.run_app(create_app(args.dim), host="127.0.0.1", port=port, print=None,
                access_log=None)


if __name__ == "__main__":
    main()
