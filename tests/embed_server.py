"""An OpenAI-compatible `/v1/embeddings` server on 127.0.0.1 whose vectors are real all-MiniLM-L6-v2
vectors, computed by the in-process encoder (`index.embedding.get_embedder`). Tests point
CITEQA_EMBED_URL at it; `citeqa bench --embed-url` measures against it (docs/gpu.md):

    .venv/bin/python -m tests.embed_server --port 8089

It encodes every request when run as a program (a throughput figure), and caches vectors by text in
tests (`cache`). It behaves like the real servers where citeqa depends on it: the OpenAI response format, the model
name it serves (`model`; another name asked for is a 404, as vLLM answers), at most `max_batch` inputs
a request (413, text-embeddings-inference's default of 32) and `max_tokens` word pieces an input
(400). Tests change it while it runs: `dim` cuts or pads the vectors to another length, `fail` answers
the next that many requests with 503, `key` requires that API key (else 401), and `hold(request)`, when
set, is called before a request is answered (to make two clients meet). `requests` records each
request: {"n": inputs, "key": the bearer key, "probe": whether it embeds only index.embedding.PROBE,
"status": the status answered}.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import numpy as np

from index.embedding import BUNDLED_MODEL_NAME, PROBE, _bundled_tokenizer, get_embedder


class EmbedServer:
    def __init__(self, model: str = BUNDLED_MODEL_NAME, port: int = 0, max_batch: int = 32,
                 max_tokens: int = 512, cache: bool = True) -> None:
        self.model, self.max_batch, self.max_tokens, self.cache = model, max_batch, max_tokens, cache
        self.dim: int | None = None
        self.fail = 0
        self.key = ""
        self.hold: Callable[[dict], None] | None = None
        self.requests: list[dict] = []
        self._embedder = get_embedder()
        self._cache: dict[str, np.ndarray] = {}  # text -> vector, when `cache`: repeated text costs one encode
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects of a server

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model",
                                                                 "created": 0, "owned_by": "test"}]})
                else:
                    self._send(404, _error("not found", 404))

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                status, reply = server.answer(body, key)
                self._send(status, reply)

            def _send(self, code: int, reply: dict) -> None:
                data = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, body: dict, key: str) -> tuple[int, dict]:
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        record = {"n": len(texts), "key": key, "probe": texts == [PROBE], "status": 200}
        with self._lock:
            self.requests.append(record)
            failing = self.fail > 0
            self.fail -= failing
        if self.hold:
            self.hold(record)
        record["status"], reply = self._reply(body, texts, key, failing)
        return record["status"], reply

    def _reply(self, body: dict, texts: list[str], key: str, failing: bool) -> tuple[int, dict]:
        if failing:
            return 503, _error("the server is overloaded, try again", 503)
        if self.key and key != self.key:
            return 401, _error("invalid API key", 401)
        if body.get("model") != self.model:
            return 404, _error(f"The model `{body.get('model')}` does not exist.", 404)
        if not texts or len(texts) > self.max_batch:
            return 413, _error(f"batch size {len(texts)} > maximum allowed batch size {self.max_batch}", 413)
        lengths = [len(e.ids) for e in _bundled_tokenizer().encode_batch(texts)]  # with [CLS] and [SEP]
        if max(lengths) > self.max_tokens:
            return 400, _error(f"an input has {max(lengths)} tokens, more than the model's {self.max_tokens}", 400)
        vecs = self.vectors(texts)
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vecs)]
        return 200, {"object": "list", "data": data[::-1],  # out of order: clients must sort by index
                     "model": self.model, "usage": {"prompt_tokens": sum(lengths), "total_tokens": sum(lengths)}}

    def vectors(self, texts: list[str]) -> np.ndarray:
        """The in-process encoder's vectors for `texts`, cut or padded to `dim` when set."""
        if not self.cache:
            vecs = self._embedder.encode(texts)
        else:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
            if missing:
                self._cache.update(zip(missing, self._embedder.encode(missing)))
            vecs = np.stack([self._cache[t] for t in texts])
        if self.dim:
            vecs = np.pad(vecs, ((0, 0), (0, max(0, self.dim - vecs.shape[1]))))[:, :self.dim]
        return vecs

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _error(message: str, code: int) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8089)
    p.add_argument("--model", default=BUNDLED_MODEL_NAME)
    args = p.parse_args(argv)
    server = EmbedServer(args.model, args.port, cache=False)  # every request encodes: a fair throughput
    print(f"serving {args.model} at {server.url}/embeddings (Ctrl-C stops)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.close()


if __name__ == "__main__":
    main()
