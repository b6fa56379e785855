"""`openai` (OpenAI's API) and `openai-compatible` (vLLM, llama.cpp server, Ollama) through the `openai` package."""

from __future__ import annotations

from typing import Iterator

from agent.backends.generative import GenerativeBackend
from agent.backends.prompting import answer_messages, condense_messages
from agent.cite import Passage
from citeqa.config import Config
from citeqa.errors import BackendError, BackendUnreachableError, ConfigError, require_extra

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"


class OpenAIBackend(GenerativeBackend):
    def __init__(self, cfg: Config) -> None:
        openai = require_extra("openai", "openai", f"the {cfg.backend} backend")
        self.name = cfg.backend
        self.context_size = self.context_for(cfg)
        if cfg.backend == "openai":
            if not cfg.api_key:
                raise ConfigError("the openai backend needs an API key",
                                  fix="set OPENAI_API_KEY (or CITEQA_API_KEY), or use --backend extractive")
            base_url = cfg.base_url or None
        else:
            if not cfg.base_url:
                raise ConfigError("the openai-compatible backend needs a server URL",
                                  fix="set CITEQA_BASE_URL, e.g. http://127.0.0.1:8000/v1 for vLLM")
            base_url = cfg.base_url
        self._openai = openai
        self.client = openai.OpenAI(api_key=cfg.api_key or "not-needed", base_url=base_url,
                                    timeout=cfg.timeout_s, max_retries=1)
        self.model = cfg.model or (DEFAULT_OPENAI_MODEL if cfg.backend == "openai" else self._served_model())

    def _served_model(self) -> str:
        models = self._call(lambda: self.client.models.list().data)
        if not models:
            raise BackendError(f"the server at {self.client.base_url} serves no model", fix="set CITEQA_MODEL")
        return models[0].id

    def _call(self, fn):
        o = self._openai
        try:
            return fn()
        except o.AuthenticationError:
            raise ConfigError("the model server rejected the API key",
                              fix="check OPENAI_API_KEY / CITEQA_API_KEY") from None
        except o.APIConnectionError:
            raise BackendUnreachableError(f"cannot reach the model server at {self.client.base_url}",
                                          fix="start the server or fix CITEQA_BASE_URL; "
                                              "or use --backend extractive (offline)") from None
        except o.APIStatusError as exc:
            raise BackendError(f"the model server answered HTTP {exc.status_code}",
                               fix="check CITEQA_MODEL names a model the server serves") from None
        except (o.APIResponseValidationError, ValueError, KeyError, AttributeError, TypeError) as exc:
            raise BackendError(f"the model server sent a reply that is not an OpenAI response ({type(exc).__name__})",
                               fix="check CITEQA_BASE_URL points at an OpenAI-compatible /v1 endpoint") from None

    def draft(self, question: str, passages: list[Passage]) -> Iterator[str]:
        messages = answer_messages(question, passages)

        def start():
            return self.client.chat.completions.create(model=self.model, messages=messages, temperature=0,
                                                       max_tokens=300, stream=True)

        iterator = iter(self._call(start))
        received = 0
        while True:
            chunk = self._call(lambda: next(iterator, None))
            if chunk is None or not hasattr(chunk, "choices"):
                if received and chunk is None:
                    return
                raise BackendError("the model server sent a reply that is not an OpenAI response",
                                   fix="check CITEQA_BASE_URL points at an OpenAI-compatible /v1 endpoint")
            received += 1
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    yield choice.delta.content

    def rewrite(self, question: str, history: list[dict]) -> str:
        reply = self._call(lambda: self.client.chat.completions.create(
            model=self.model, messages=condense_messages(question, history), temperature=0, max_tokens=80))
        return (reply.choices[0].message.content or "").strip().splitlines()[0] if reply.choices else question
