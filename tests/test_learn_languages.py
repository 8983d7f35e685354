"""codegemma learn in BabelCode's languages: starters from BabelCode's prompts, grading through its driver in
the sandbox (real compilers), compile errors on the learner's line, time-outs, missing toolchains, progress per
language, the spoiler filter outside Python, tree-sitter fixes, and the hint prompt of an instruction-tuned
model written in Gemma's chat template."""

from __future__ import annotations

import json
import sqlite3

import pytest
from fastapi.testclient import TestClient

from codegemma.eval.babelcode import LANGUAGES as BABEL
from codegemma.eval.babelcode import go
from codegemma.learn.app import create_app
from codegemma.learn.exercises import shipped
from codegemma.learn.fixing import fix, problems
from codegemma.learn.hints import hint, hint_messages
from codegemma.learn.languages import (
    LANGUAGES,
    LanguageError,
    body,
    calls,
    grade_babel,
    missing_toolchain,
    offered,
    question,
    questions,
    starter,
)
from codegemma.learn.progress import Progress
from test_learn import WRONG, Canned

# MBPP 11, "remove first and last occurrence of a given character", in each language: (right, wrong, broken
# with the line of its error). Each is what a learner writes in place of the starter's body.
SOLUTIONS = {
    "javascript": ("function removeOcc(s, ch) {\n  const a = s.indexOf(ch);\n  if (a < 0) return s;\n"
                   "  s = s.slice(0, a) + s.slice(a + 1);\n  const b = s.lastIndexOf(ch);\n"
                   "  return b < 0 ? s : s.slice(0, b) + s.slice(b + 1);\n}\n",
                   "function removeOcc(s, ch) {\n  console.log('checking ' + s);\n  return s;\n}\n",
                   ("function removeOcc(s, ch) {\n  let x = nope +;\n  return s;\n}\n", 2)),
    "cpp": ("string removeOcc(string s, char ch) {\n    size_t a = s.find(ch);\n    if (a == string::npos) return s;\n"
            "    s.erase(a, 1);\n    size_t b = s.rfind(ch);\n    if (b != string::npos) s.erase(b, 1);\n"
            "    return s;\n}\n",
            "string removeOcc(string s, char ch) {\n    cout << \"checking \" << s << endl;\n    return s;\n}\n",
            ("string removeOcc(string s, char ch) {\n    int x = nope;\n    return s;\n}\n", 2)),
    "java": ("class Solution {\n    public String removeOcc(String s, Character ch) {\n        int a = s.indexOf(ch);\n"
             "        if (a < 0) return s;\n        s = s.substring(0, a) + s.substring(a + 1);\n"
             "        int b = s.lastIndexOf(ch);\n        return b < 0 ? s : s.substring(0, b) + s.substring(b + 1);\n"
             "    }\n}\n",
             "class Solution {\n    public String removeOcc(String s, Character ch) {\n        return s;\n    }\n}\n",
             ("class Solution {\n    public String removeOcc(String s, Character ch) {\n        int x = nope;\n"
              "        return s;\n    }\n}\n", 3)),
    "go": ("func removeOcc(s string, ch rune) string {\n    r := []rune(s)\n    for i := 0; i < len(r); i++ {\n"
           "        if r[i] == ch {\n            r = append(r[:i], r[i+1:]...)\n            break\n        }\n    }\n"
           "    for i := len(r) - 1; i >= 0; i-- {\n        if r[i] == ch {\n"
           "            r = append(r[:i], r[i+1:]...)\n            break\n        }\n    }\n    return string(r)\n}\n",
           "func removeOcc(s string, ch rune) string {\n    return s\n}\n",
           ("func removeOcc(s string, ch rune) string {\n    x := nope\n    return s\n}\n", 2)),
    "rust": ("pub fn remove_occ(s: String, ch: char) -> String {\n    let mut v: Vec<char> = s.chars().collect();\n"
             "    if let Some(i) = v.iter().position(|&c| c == ch) { v.remove(i); }\n"
             "    if let Some(i) = v.iter().rposition(|&c| c == ch) { v.remove(i); }\n    v.into_iter().collect()\n}\n",
             "pub fn remove_occ(s: String, ch: char) -> String {\n    s\n}\n",
             ("pub fn remove_occ(s: String, ch: char) -> String {\n    let x = nope;\n    s\n}\n", 2)),
    "csharp": ("class Solution {\n    public string RemoveOcc(string s, char ch) {\n        int a = s.IndexOf(ch);\n"
               "        if (a < 0) return s;\n        s = s.Remove(a, 1);\n        int b = s.LastIndexOf(ch);\n"
               "        return b < 0 ? s : s.Remove(b, 1);\n    }\n}\n",
               "class Solution {\n    public string RemoveOcc(string s, char ch) {\n        return s;\n    }\n}\n",
               ("class Solution {\n    public string RemoveOcc(string s, char ch) {\n        int x = nope;\n"
                "        return s;\n    }\n}\n", 3)),
    "kotlin": ("fun removeOcc(s: String, ch: Char): String {\n    var t = s\n    val a = t.indexOf(ch)\n"
               "    if (a < 0) return t\n    t = t.removeRange(a, a + 1)\n    val b = t.lastIndexOf(ch)\n"
               "    return if (b < 0) t else t.removeRange(b, b + 1)\n}\n",
               "fun removeOcc(s: String, ch: Char): String {\n    return s\n}\n",
               ("fun removeOcc(s: String, ch: Char): String {\n    val x = nope\n    return s\n}\n", 2)),
}
FAST = ("javascript", "cpp")  # node and g++ take well under a second; the other compilers run in the slow tier


@pytest.fixture(scope="module")
def catalogue():
    return {e.id: e for e in shipped()}


def needs(language: str) -> None:
    why = missing_toolchain(language)
    if why:
        pytest.skip(why)


def test_exercises_are_offered_in_babelcode_languages_from_its_prompts(catalogue):
    e = catalogue["mbpp-11"]
    assert offered("mbpp-11") == list(LANGUAGES) and offered("humaneval-0") == list(LANGUAGES)
    python_only = next(i for i in catalogue if i not in questions())
    assert offered(python_only) == ["python"]
    with pytest.raises(LanguageError, match="Python only"):
        question(catalogue[python_only], "java")
    with pytest.raises(LanguageError, match="unknown language"):
        question(e, "cobol")
    assert len(questions()) > 1000  # 161 HumanEval and 857 MBPP questions convert
    q = questions()["mbpp-11"]
    for language in LANGUAGES:
        if language == "python":
            assert starter(e, language) == e.starter
            continue
        text = starter(e, language)
        assert text.startswith(BABEL[language].prompt(q, examples=True))  # the statement and signature
        assert "Examples:" in text and "// your code here" in text
        assert body(text, language) + getattr(BABEL[language], "CLOSER", "") == text.rstrip()  # as the driver puts
        # back the closing braces BabelCode's stop words cut
    assert calls(e, "cpp")[0] == ('removeOcc(string("hello"), \'l\')', 'string("heo")')
    assert calls(e, "rust")[0] == ("remove_occ(String::from(\"hello\"), 'l')", 'String::from("heo")')


def check_language(e, language: str) -> None:
    right, wrong, (broken, line) = SOLUTIONS[language]
    report = grade_babel(e, language, right)
    assert report.passed and report.n_passed == 3 and report.load_error is None, report.to_dict()
    report = grade_babel(e, language, wrong)
    assert [t.status for t in report.tests] == ["failed"] * 3, report.to_dict()
    assert report.tests[0].expected == calls(e, language)[0][1] and report.tests[0].actual is None
    report = grade_babel(e, language, broken)
    error = report.load_error
    assert error is not None and not report.passed and {t.status for t in report.tests} == {"error"}
    assert error["line"] == line and "nope" in error["line_text"], error
    assert f"your code, line {line}" in error["output"]


@pytest.mark.parametrize("language", FAST)
def test_javascript_and_cpp_are_graded_through_the_babelcode_driver(catalogue, language):
    needs(language)
    check_language(catalogue["mbpp-11"], language)
    report = grade_babel(catalogue["mbpp-11"], language, SOLUTIONS[language][1])
    assert report.tests[0].output == "checking hello"  # what the learner's code printed during that test
    if language == "cpp":
        assert report.load_error is None and report.tests[1].output == "checking abcda"
        assert grade_babel(catalogue["mbpp-11"], language, SOLUTIONS[language][2][0]).load_error["status"] \
            == "compile error"


@pytest.mark.slow
@pytest.mark.parametrize("language", ["java", "go", "rust", "csharp", "kotlin"])
def test_compiled_languages_grade_right_wrong_and_broken_code(catalogue, language):
    needs(language)
    check_language(catalogue["mbpp-11"], language)


def test_exceptions_and_time_outs_are_reported_per_test(catalogue):
    needs("javascript")
    e = catalogue["mbpp-11"]
    thrown = grade_babel(e, "javascript", "function removeOcc(s, ch) {\n  return s.x.y;\n}\n")
    assert [t.error for t in thrown.tests] == ["raised TypeError"] * 3
    hangs = "function removeOcc(s, ch) {\n  if (s === 'abcda') while (true) {}\n  return 'heo';\n}\n"
    slow = grade_babel(e, "javascript", hangs, timeout=2.0)
    assert [t.status for t in slow.tests] == ["passed", "timeout", "not run"], slow.to_dict()
    assert slow.tests[1].error.startswith("timed out")


def test_a_missing_toolchain_is_shown_with_what_to_install(catalogue, monkeypatch, tmp_path):
    monkeypatch.setattr(go, "GO", str(tmp_path / "no-go"))
    assert missing_toolchain("go") == go.INSTALL and missing_toolchain("python") is None
    with TestClient(create_app(Canned("no model needed"), Progress(tmp_path / "p.sqlite"))) as client:
        page = client.get("/api/exercises/mbpp-11", params={"language": "go"}).json()
        assert page["language"]["available"] is False and "apt-get install golang-go" in page["language"]["install"]
        assert [lang["id"] for lang in page["languages"]] == list(LANGUAGES)
        refused = client.post("/api/exercises/mbpp-11/run", json={"code": SOLUTIONS["go"][0], "language": "go"})
        assert refused.status_code == 409 and "golang-go" in refused.json()["error"]
        assert client.get("/api/exercises/mbpp-11", params={"language": "cobol"}).status_code == 400


def test_progress_is_kept_per_exercise_and_language(tmp_path):
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as old:  # a database from before languages: its rows are Python's
        old.executescript("CREATE TABLE attempts (id INTEGER PRIMARY KEY, exercise TEXT NOT NULL, at REAL NOT NULL, "
                          "code TEXT NOT NULL, passed INTEGER NOT NULL, n_passed INTEGER NOT NULL, "
                          "n_tests INTEGER NOT NULL, seconds REAL NOT NULL);"
                          "INSERT INTO attempts VALUES (1, 'mbpp-2', 0, 'py', 0, 0, 3, 5);")
    p = Progress(db)
    p.record_attempt("mbpp-2", "js wrong", False, 1, 3, 10, "javascript")
    p.record_attempt("mbpp-2", "js right", True, 3, 3, 10, "javascript")
    p.record_hint("mbpp-2", "js wrong", "look at the order", False, "m", "javascript")
    assert p.summary("python")["mbpp-2"] == {"attempts": 1, "solved": False, "hints": 0, "seconds": 5.0,
                                             "solved_in": []}
    assert p.summary("javascript")["mbpp-2"] == {"attempts": 2, "solved": True, "hints": 1, "seconds": 20.0,
                                                 "solved_in": ["javascript"]}
    assert p.summary()["mbpp-2"]["attempts"] == 3 and p.summary()["mbpp-2"]["solved_in"] == ["javascript"]
    assert (p.last_code("mbpp-2"), p.last_code("mbpp-2", "javascript"), p.last_code("mbpp-2", "go")) == \
        ("py", "js right", None)
    assert {json.loads(line).get("language") for line in p.export()} == {"python", "javascript"}


def test_the_spoiler_filter_runs_hints_in_the_exercises_language(catalogue):
    needs("javascript")
    e = catalogue["mbpp-11"]
    right, wrong, _ = SOLUTIONS["javascript"]
    spoiler = Canned(f"Like this:\n```javascript\n{right}```")
    h = hint(spoiler, e, wrong, language="javascript")
    assert h.withheld and h.spoilers == 3 and "removeOcc(\"hello\", \"l\")" in h.text and '"heo"' in h.text
    nudge = Canned("Which occurrences does your function remove? Count them for 'abcda'.")
    assert not hint(nudge, e, wrong, language="javascript").withheld
    assert "in JavaScript" in hint_messages(e, wrong, None, "javascript")[0]["content"]


BROKEN_SOURCES = {  # (language, source, the line tree-sitter points at, what the accepted repair contains)
    "cpp": ("int add(int a, int b) {\n    return a + b\n}\n", 2, "return a + b;"),
    # (tree-sitter's Rust grammar gives up on the whole function: the ERROR node starts at its first line)
    "rust": ("fn add(a: i32, b: i32) -> i32 {\n    let c = a + b\n    c\n}\n", 1, "let c = a + b;"),
    "c_sharp": ("class A {\n    int Add(int a, int b) {\n        return a + b\n    }\n}\n", 3, "return a + b;"),
    "kotlin": ("fun add(a: Int, b: Int): Int {\n    return (a + b\n}\n", 2, "return (a + b)"),
}


@pytest.mark.parametrize("language", list(BROKEN_SOURCES))
def test_fix_locates_errors_with_tree_sitter_and_keeps_the_diff_small(language):
    source, line, repaired = BROKEN_SOURCES[language]
    found = problems(source, language)
    assert found and found[0].line == line
    result = fix(source, language, Canned("```\nnot code at all {{{\n```"))  # a useless model: the parser repairs
    assert result.rejected and result.source == "parser" and problems(result.fixed, language) == []
    assert repaired in result.fixed and result.diff.count("\n+") - result.diff.count("\n+++") <= 3


IT_TEMPLATE = (  # google/codegemma-7b-it's tokenizer_config.json "chat_template" (the same as gemma-7b-it's)
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")


def test_an_instruction_tuned_model_gets_the_hint_in_gemmas_chat_template(catalogue, tok_folder, tmp_path):
    """A tiny random model set up as an IT release is (its tokenizer_config.json carries CodeGemma-IT's chat
    template; a context long enough for the hint): the ids the hint sends it are what transformers'
    apply_chat_template makes of the same messages."""
    from transformers import AutoTokenizer

    from codegemma import load
    from codegemma.learn.grading import grade
    from conftest import TINY_CONFIGS, write_checkpoint

    it = write_checkpoint(tmp_path / "tiny-it", {**TINY_CONFIGS["mqa"], "max_position_embeddings": 2048}, tok_folder)
    config = json.loads((it / "tokenizer_config.json").read_text())
    (it / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": IT_TEMPLATE}))
    model = load(it)
    sent = []  # what reaches the decode loop, which then generates nothing (the prompt is under test, and fast)
    model.stream_ids = lambda prompts, options, **kw: sent.append(list(prompts[0])) or iter(())
    e = catalogue["mbpp-2"]
    assert hint(model, e, WRONG).source == "nudge"
    messages = hint_messages(e, WRONG, grade(e, WRONG).first_failure())
    reference = AutoTokenizer.from_pretrained(str(it))
    text = reference.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == f"<bos><start_of_turn>user\n{messages[0]['content'].strip()}<end_of_turn>\n<start_of_turn>model\n"
    assert sent and sent[0] == reference.encode(text, add_special_tokens=False)  # its <bos> is in the text
    assert sent[0] == model.chat_ids(messages)
