"""Request bodies of the dialects (OpenAI, Ollama, llama.cpp, Tabby), validated strictly where it matters.

Unknown fields are accepted and ignored, since editor extensions send many; the ones we use are typed
and bounded, so a wrong type or an absurd limit is a 4xx, never a 500.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictBool, StrictFloat, StrictInt, StrictStr, Tag

MAX_TOKENS = 1 << 20  # finer limits come from the context window, checked per request
Temperature = Annotated[StrictFloat | StrictInt, Field(ge=0, le=100)]
Probability = Annotated[StrictFloat | StrictInt, Field(ge=0, le=1)]
Seed = Annotated[StrictInt, Field(ge=-(1 << 63), lt=1 << 64)]
Stop = StrictStr | Annotated[list[StrictStr], Field(max_length=64)] | None


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class StreamOptions(Lenient):
    include_usage: StrictBool = False


class OpenAIRequest(Lenient):
    """Fields both OpenAI routes take."""

    model: StrictStr | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    stop: Stop = None
    seed: Seed | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: Annotated[StrictInt, Field(ge=1, le=16)] = 1  # choices (one after another, sharing the cached prompt)


class CompletionRequest(OpenAIRequest):
    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=1)]  # required, as OpenAI's
    suffix: StrictStr | None = None
    max_tokens: Annotated[StrictInt, Field(ge=0, le=MAX_TOKENS)] | None = 16


class ContentPart(Lenient):
    type: StrictStr
    text: StrictStr | None = None


class ChatMessage(Lenient):
    role: StrictStr
    content: StrictStr | Annotated[list[ContentPart], Field(max_length=256)] | None = ""


class ChatRequest(OpenAIRequest):
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=4096)]
    max_tokens: Annotated[StrictInt, Field(ge=0, le=MAX_TOKENS)] | None = None
    max_completion_tokens: Annotated[StrictInt, Field(ge=0, le=MAX_TOKENS)] | None = None


class OllamaOptions(Lenient):
    temperature: Temperature | None = None
    top_p: Probability | None = None
    top_k: Annotated[StrictInt, Field(ge=0, le=1 << 20)] | None = None
    min_p: Probability | None = None
    num_predict: Annotated[StrictInt, Field(ge=-2, le=MAX_TOKENS)] | None = None
    stop: Stop = None
    repeat_penalty: Annotated[StrictFloat | StrictInt, Field(gt=0, le=100)] | None = None
    seed: Seed | None = None
    num_ctx: Annotated[StrictInt, Field(ge=1, le=1 << 24)] | None = None


class OllamaGenerateRequest(Lenient):
    model: StrictStr | None = None
    prompt: StrictStr = ""
    suffix: StrictStr | None = None
    system: StrictStr | None = None
    raw: StrictBool = False
    stream: StrictBool = True
    options: OllamaOptions | None = None


class OllamaMessage(Lenient):
    role: StrictStr
    content: StrictStr = ""


class OllamaChatRequest(Lenient):
    model: StrictStr | None = None
    messages: Annotated[list[OllamaMessage], Field(min_length=1, max_length=4096)]
    stream: StrictBool = True
    options: OllamaOptions | None = None


class OllamaShowRequest(Lenient):
    model: StrictStr | None = None
    name: StrictStr | None = None


class ExtraFile(Lenient):
    filename: StrictStr = ""
    text: StrictStr = ""


class LlamaCommon(Lenient):
    n_predict: Annotated[StrictInt, Field(ge=-1, le=MAX_TOKENS)] = -1
    temperature: Temperature | None = None
    top_k: Annotated[StrictInt, Field(ge=0, le=1 << 20)] | None = None
    top_p: Probability | None = None
    min_p: Probability | None = None
    repeat_penalty: Annotated[StrictFloat | StrictInt, Field(gt=0, le=100)] | None = None
    stop: Annotated[list[StrictStr], Field(max_length=64)] | None = None
    seed: Seed | None = None
    stream: StrictBool = False
    cache_prompt: StrictBool = True
    t_max_predict_ms: Annotated[StrictInt | StrictFloat, Field(ge=0, le=1 << 31)] = 0
    n_indent: Annotated[StrictInt, Field(ge=0, le=1 << 16)] = 0
    response_fields: Annotated[list[StrictStr], Field(max_length=256)] | None = None
    n_cmpl: Annotated[StrictInt, Field(ge=1, le=16)] = 1  # candidates (llama.vscode sends 3)


class InfillRequest(LlamaCommon):
    input_prefix: StrictStr = ""
    input_suffix: StrictStr = ""
    input_extra: Annotated[list[ExtraFile], Field(max_length=1024)] = []
    prompt: StrictStr = ""


class LlamaCompletionRequest(LlamaCommon):
    prompt: StrictStr | Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=1)] = ""


Dialect = Literal["openai", "ollama", "llama"]


class TabbySnippet(Lenient):
    filepath: StrictStr
    body: StrictStr
    score: StrictFloat | StrictInt = 0.0


class TabbySegments(Lenient):
    """Tabby's completion context (tabby-openapi's Segments)."""

    prefix: StrictStr
    suffix: StrictStr | None = None
    filepath: StrictStr | None = None
    git_url: StrictStr | None = None
    declarations: Annotated[list[TabbySnippet], Field(max_length=256)] | None = None
    relevant_snippets_from_changed_files: Annotated[list[TabbySnippet], Field(max_length=256)] | None = None
    relevant_snippets_from_recently_opened_files: Annotated[list[TabbySnippet], Field(max_length=256)] | None = None
    clipboard: StrictStr | None = None


class TabbyDebugOptions(Lenient):
    raw_prompt: StrictStr | None = None
    return_snippets: StrictBool = False
    return_prompt: StrictBool = False
    disable_retrieval_augmented_code_completion: StrictBool = False


class TabbyCompletionRequest(Lenient):
    """POST /v1/completions as Tabby's agent sends it: told from OpenAI's by its `segments` object."""

    language: StrictStr | None = None
    segments: TabbySegments | None = None
    user: StrictStr | None = None
    debug_options: TabbyDebugOptions | None = None
    temperature: Temperature | None = None
    seed: Annotated[StrictInt, Field(ge=0, lt=1 << 64)] | None = None
    mode: StrictStr = "standard"


class TabbyEvent(Lenient):
    """POST /v1/events: the editor showed (view), accepted (select) or dismissed a completion."""

    type: StrictStr
    completion_id: StrictStr
    choice_index: Annotated[StrictInt, Field(ge=0)] = 0
    view_id: StrictStr | None = None
    elapsed: Annotated[StrictInt, Field(ge=0)] | None = None


def _completion_kind(body: object) -> str:
    return "tabby" if isinstance(body, dict) and isinstance(body.get("segments"), dict) else "openai"


# POST /v1/completions serves OpenAI's clients and Tabby's agent: a `segments` object means Tabby
AnyCompletionRequest = Annotated[Annotated[CompletionRequest, Tag("openai")]
                                 | Annotated[TabbyCompletionRequest, Tag("tabby")], Discriminator(_completion_kind)]
