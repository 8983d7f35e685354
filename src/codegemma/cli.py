"""The `codegemma` command: a thin table of subcommands over the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import ConfigError

EXIT_USAGE, EXIT_ERROR = 2, 1


class CliError(Exception):
    """A user error reported as one line on stderr."""


def model_args(p: argparse.ArgumentParser) -> None:
    """--model, --device, --dtype and the GGUF options, shared by every command that loads a model."""
    p.add_argument("--model", default="default", help="HF folder, .gguf file, or 'default' (the embedded model)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="weights and activations (default: float32 on CPU, bfloat16 on CUDA)")
    p.add_argument("--keep-quantized", action="store_true",
                   help="GGUF: keep projection weights quantized (less memory, slower)")
    p.add_argument("--no-int4-decode", dest="int4_decode", action="store_const", const=False, default=None,
                   help="GGUF in bfloat16 on CPU: decode with the dense weights, not the int4 kernels")


def _sampling_args(p: argparse.ArgumentParser, max_tokens: int) -> None:
    p.add_argument("--max-tokens", type=int, default=max_tokens)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="1.0 = off (default; Gemma dislikes 1.1)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def _options(args: argparse.Namespace) -> dict:
    return dict(max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                min_p=args.min_p, repetition_penalty=args.repetition_penalty, seed=args.seed, stop=tuple(args.stop))


def load_model(args: argparse.Namespace):
    from .api import load
    return load(args.model, device=args.device, dtype=args.dtype, keep_quantized=args.keep_quantized,
                int4_decode=args.int4_decode)


def _emit(chunks, out=sys.stdout) -> None:
    for chunk in chunks:
        out.write(chunk)
        out.flush()
    out.write("\n")


def cmd_generate(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    _options_check(args)
    m = load_model(args)
    _emit(m.stream(prompt, parse_special=args.parse_special, **_options(args)))
    return 0


def read_cursor(target: str) -> tuple[str, str, str]:
    """FILE:LINE:COL (1-based) -> (path, prefix, suffix)."""
    parts = target.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise CliError(f"expected FILE:LINE:COL with 1-based numbers, got {target!r}")
    path, line, col = parts[0], int(parts[1]), int(parts[2])
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CliError(f"{path} is not UTF-8 text (byte {exc.start})") from exc
    lines = text.splitlines(keepends=True) or [""]
    if lines[-1].endswith(("\n", "\r")):
        lines.append("")
    if not 1 <= line <= len(lines):
        raise CliError(f"{path} has {len(lines)} lines; line {line} is out of range")
    body = lines[line - 1].rstrip("\r\n")
    if not 1 <= col <= len(body) + 1:
        raise CliError(f"line {line} of {path} has {len(body)} characters; column {col} is out of range")
    offset = sum(len(x) for x in lines[:line - 1]) + col - 1
    return path, text[:offset], text[offset:]


def cmd_complete(args: argparse.Namespace) -> int:
    from .prompts import ContextFile

    if args.target and (args.prefix is not None or args.suffix is not None):
        raise CliError("give FILE:LINE:COL or --prefix/--suffix, not both")
    if args.target:
        path, prefix, suffix = read_cursor(args.target)
        path = args.path or path
    elif args.prefix is not None or args.suffix is not None:
        path, prefix, suffix = args.path, args.prefix or "", args.suffix or ""
    else:
        raise CliError("nothing to complete: give FILE:LINE:COL or --prefix/--suffix")
    context = []
    for file in args.context:
        try:
            context.append(ContextFile(file, Path(file).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read context file {file}: {exc}") from exc
    _options_check(args)
    m = load_model(args)
    _emit(m.stream_complete(prefix, suffix, path=path, mode=args.mode, context=context, **_options(args)))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    _options_check(args)
    m = load_model(args)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    if args.message is not None:
        _emit(m.stream_chat(messages + [{"role": "user", "content": args.message}], **_options(args)))
        return 0
    print(f"chatting with {m.name} (Ctrl-D to quit, /reset to start over)", file=sys.stderr)
    while True:
        try:
            text = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        if text.strip() == "/reset":
            messages = messages[:1] if args.system else []
            continue
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        reply = []
        for chunk in m.stream_chat(messages, **_options(args)):
            reply.append(chunk)
            sys.stdout.write(chunk)
            sys.stdout.flush()
        sys.stdout.write("\n")
        messages.append({"role": "model", "content": "".join(reply)})


def cmd_info(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .tokenizer import NAMED_SPECIALS
    m = load_model(args)
    tok = m.tokenizer
    special = {name: tok.token_id(name) for name in ("<bos>", "<eos>", "<pad>", *NAMED_SPECIALS)}
    special.update({"<bos>": tok.bos_id, "<eos>": tok.eos_id, "<pad>": tok.pad_id})
    config = {k: v for k, v in asdict(m.config).items() if k != "extra"}
    info = {"model": str(args.model), "name": m.name, "config": config,
            "tokenizer": {"vocab_size": tok.vocab_size, "special_token_ids": special, "source": tok.source},
            "fim_native": m.fim_native,
            "completion": "fill-in-the-middle" if m.fim_native else "left-to-right (no FIM tokens)",
            "parameters": sum(p.numel() for p in m.model.parameters()),
            "dtype": str(m.model.dtype).removeprefix("torch."), "source_format": m.source_format,
            "int4_decode": _int4_summary(m.model)}
    print(json.dumps(info, indent=2))
    return 0


def _int4_summary(model) -> dict:
    """Which projections decode through int4 planes (GGUF in bfloat16 on CPU), and whether the head does."""
    from torch import nn

    from .quantized import Int4DecodeLinear
    packed = sum(isinstance(mod, Int4DecodeLinear) for mod in model.modules())
    linears = sum(isinstance(mod, nn.Linear) for mod in model.modules())
    return {"projections": f"{packed} of {linears}", "output_head": model.decode_head is not None}


def _options_check(args: argparse.Namespace) -> None:
    from .api import Options
    try:
        Options(**_options(args)).sampling()
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if args.max_tokens < 0:
        raise CliError("--max-tokens must be >= 0")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codegemma", description="CodeGemma: completion, generation and chat.")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, tuple[Callable, str]] = {
        "generate": (cmd_generate, "continue a prompt"),
        "complete": (cmd_complete, "fill in the middle at FILE:LINE:COL or between --prefix and --suffix"),
        "chat": (cmd_chat, "chat (interactive, or one-shot with --message)"),
        "info": (cmd_info, "show a model's config, special token ids and whether FIM is native"),
    }
    ps = {name: sub.add_parser(name, help=help_) for name, (_, help_) in commands.items()}
    for name, p in ps.items():
        p.set_defaults(func=commands[name][0])
        model_args(p)
    ps["generate"].add_argument("prompt", help="prompt text, or - to read standard input")
    ps["generate"].add_argument("--parse-special", action="store_true",
                                help="turn special-token text in the prompt into control tokens")
    _sampling_args(ps["generate"], 256)
    c = ps["complete"]
    c.add_argument("target", nargs="?", help="FILE:LINE:COL (1-based) of the cursor")
    c.add_argument("--prefix")
    c.add_argument("--suffix")
    c.add_argument("--path", help="file path shown to the model (default: FILE)")
    c.add_argument("--mode", default="psm", choices=["psm", "spm", "spm-bavarian"])
    c.add_argument("--context", action="append", default=[], help="another file of the repository (repeatable)")
    _sampling_args(c, 128)
    ps["chat"].add_argument("--message", help="one message; print the reply and exit")
    ps["chat"].add_argument("--system", help="system text (folded into the first user turn)")
    _sampling_args(ps["chat"], 512)
    ps["info"].add_argument("model_pos", nargs="?", metavar="MODEL")
    _extend(sub)
    return parser


def _extend(sub) -> None:
    """Commands defined by other parts of the package register here."""
    from .data.cli import add_data_command
    from .eval.cli import add_eval_command
    from .server.cli import add_serve_command
    from .train.cli import add_train_command
    from .weights.convert import add_convert_command
    add_convert_command(sub)
    add_serve_command(sub)
    add_eval_command(sub)
    add_data_command(sub)
    add_train_command(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "model_pos", None):
        args.model = args.model_pos
    from .api import ModelLoadError
    from .prompts import PromptError
    from .tokenizer import TokenizerError
    from .train.trainer import TrainError
    from .weights import CheckpointError
    try:
        return args.func(args)
    except (CliError, ModelLoadError, CheckpointError, TokenizerError, PromptError, ConfigError,
            FileNotFoundError, OSError, TrainError) as exc:
        print(f"codegemma: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as exc:
        print(f"codegemma: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
