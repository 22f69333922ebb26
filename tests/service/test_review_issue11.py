"""Regressions from the hostile review of issue 11 (API/CLI polish).

Each test failed on the code as reviewed; its docstring says what was wrong and what was
measured then against a live `warden up` (and here against the ``cluster`` fixture).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import jsonschema

from sandboxes.compilation.entry import entry_problem
from sandboxes.compilation.modules import decode_module
from sandboxes.schema import MAX_STDIN_BYTES, Grants, JobSpec, Limits
from sandboxes.settings import Settings
from tests.service.cluster import ROOT, Cluster, unix

# Writes the three bytes fb ff fe (not UTF-8) to stdout.
NOT_UTF8 = r"""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "\fb\ff\fe")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8)) (i32.store (i32.const 4) (i32.const 3))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))))"""
NOOP = '(module (func (export "_start")))'
LOOP = '(module (func (export "_start") (loop (br 0))))'
COMPONENTS = ROOT / "tests/fixtures/components"


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True,
                          env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
                          cwd=cwd or ROOT, timeout=timeout, check=False)


def _ids_in(cluster: Cluster, since: float) -> set[str]:
    """Ids of the jobs created since ``since`` (unix seconds), from the listing."""
    page = cluster.http.get("/v1/jobs", params={"limit": 100}).json()
    return {j["id"] for j in page["jobs"] if j and unix(j["created_at"]) >= since}


# -- encoding=text: a 406 after the job was created ---------------------------------------
def test_batch_wait_encoding_text_406_loses_the_ids_of_queued_jobs(cluster: Cluster) -> None:
    """`POST /v1/jobs/batch?wait=…&encoding=text` with one job whose stdout is not UTF-8
    answers 406 `output-not-text`, although the whole batch was queued and ran: the
    answer names only the one job in its `detail`, so the caller loses the ids of every
    other job of the batch (and a client that retries on a 4xx queues the batch twice).
    Measured: 406, body `{"type": ".../output-not-text", "detail": "job <id2>'s stdout is
    not valid UTF-8…"}`, no `ids`, no Location; job 1 existed and had finished."""
    started = time.time()
    r = cluster.http.post("/v1/jobs/batch", params={"wait": 20, "encoding": "text"},
                          json={"jobs": [{"wat": NOOP}, {"wat": NOT_UTF8}]})
    created = _ids_in(cluster, started)
    assert len(created) >= 2, "the batch should have been queued"
    text = r.text
    missing = [job_id for job_id in created if job_id not in text]
    assert not missing, (r.status_code, text, f"ids of queued jobs not in the answer: {missing}")


def test_submit_wait_encoding_text_406_gives_no_usable_job_id(cluster: Cluster) -> None:
    """`POST /v1/jobs?wait=…&encoding=text` for a job whose stdout is not UTF-8 creates and
    runs the job, then answers 406 with no `Location` header and no `id` member: a 4xx
    that says the request failed although it took effect; the id is only inside English
    prose. Measured: 406 problem, headers without `location` (the 200/202 answers of the
    same route carry `Location: /v1/jobs/<id>`)."""
    r = cluster.http.post("/v1/jobs", params={"wait": 20, "encoding": "text"},
                          json={"wat": NOT_UTF8})
    assert r.status_code == 200, r.text  # the record, its outputs kept in base64
    assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}", dict(r.headers)
    assert r.json()["result"]["encoding"] == "base64", r.text
    assert r.json()["result"]["stdout"] == "+//+", r.text


def test_listing_with_encoding_text_is_unreadable_after_one_binary_job(cluster: Cluster) -> None:
    """One job with non-UTF-8 output makes every `GET /v1/jobs?encoding=text` page that
    contains it a 406: `warden`'s listing in text form cannot be read past that job (and
    `?ids=a,b&encoding=text` fails whole for one bad record). Measured: after one such job,
    `GET /v1/jobs?encoding=text&limit=5` → 406 `output-not-text`; the same page in base64
    holds 5 ordinary records."""
    r = cluster.http.post("/v1/jobs", params={"wait": 20}, json={"wat": NOT_UTF8})
    assert r.status_code == 200, r.text
    ok = cluster.http.post("/v1/jobs", params={"wait": 20}, json={"wat": NOOP})
    assert ok.status_code == 200, ok.text
    page = cluster.http.get("/v1/jobs", params={"limit": 5, "encoding": "text"})
    assert page.status_code == 200, page.text


# -- OpenAPI: the batch 202 --------------------------------------------------------------
def test_batch_wait_202_body_does_not_match_its_openapi_schema(cluster: Cluster) -> None:
    """The 202 of `POST /v1/jobs/batch` is documented as `{"$ref": BatchAccepted, "anyOf":
    [BatchAccepted, JobList]}`: in OpenAPI 3.1 the sibling `$ref` also applies, so every
    body must have `ids`. With `?wait` that runs out the body is a JobList (`jobs`,
    `next_cursor`), which fails the schema. Measured with jsonschema Draft 2020-12:
    "'ids' is a required property". (Schemathesis' contract test never hits it: its jobs
    end within the wait.)"""
    spec = cluster.http.get("/openapi.json").json()
    r = cluster.http.post("/v1/jobs/batch", params={"wait": 0.5},
                          json={"jobs": [{"wat": LOOP, "limits": {"wall_time_s": 2}}]})
    assert r.status_code == 202, r.text
    schema = spec["paths"]["/v1/jobs/batch"]["post"]["responses"]["202"]["content"][
        "application/json"]["schema"]
    validator = jsonschema.Draft202012Validator({**schema, "components": spec["components"]})
    errors = [e.message for e in validator.iter_errors(r.json())]
    assert not errors, errors


# -- no-entry-point at submit ------------------------------------------------------------
def test_start_with_parameters_is_queued_and_fails_later(cluster: Cluster) -> None:
    """Issue 11: a module with no runnable entry is a 422 at submit. A `_start` that takes
    parameters (or returns a value) cannot be run either, but is accepted with 202 and
    ends later as `invalid_module` ("_start must take no parameters and return nothing
    (it is (i32) -> ())") — exactly the complaint of the issue. Measured: 202, then
    state finished, status invalid_module."""
    r = cluster.http.post("/v1/jobs",
                          json={"wat": '(module (func (export "_start") (param i32)))'})
    assert r.status_code == 422, (r.status_code, r.text)


def test_component_entry_check_is_fooled_by_the_name_in_any_bytes() -> None:
    """`entry_problem` accepts a component when the bytes `wasi:cli/run@0.2` occur
    anywhere in it (a substring test), not when it exports that interface. The fixture
    `no_run.wasm` (422 at submit) with one custom section named `wasi:cli/run@0.2.0`
    appended (valid per `wasm-tools validate`) passes: the API queues it (202) and it ends
    `unsupported` ("component exports no wasi:cli/run@0.2.x") — the 422 promised at
    submit."""
    wasm = (COMPONENTS / "no_run.wasm").read_bytes()
    name = b"wasi:cli/run@0.2.0"
    payload = bytes([len(name)]) + name
    padded = wasm + b"\x00" + bytes([len(payload)]) + payload
    assert entry_problem(decode_module(wasm, 1 << 26)) is not None  # the control
    assert entry_problem(decode_module(padded, 1 << 26)) is not None


# -- wording -----------------------------------------------------------------------------
def test_scratch_quota_bound_error_is_not_in_plain_words(cluster: Cluster) -> None:
    """Issue 11: limit errors speak the user's language. The scratch quota's bound (1 GiB)
    still says "quota_bytes: Input should be less than or equal to 1073741824", in the API
    and in `warden run/submit --scratch 2GiB` (exit 125), while `--memory 10GiB` says
    "memory must be at most 4GiB"."""
    r = cluster.http.post("/v1/jobs", json={"wat": NOOP,
                                            "grants": {"scratch": {"quota_bytes": "2GiB"}}})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "1073741824" not in detail and "1GiB" in detail.replace(" ", ""), detail


def test_batch_validation_errors_do_not_name_the_index(cluster: Cluster) -> None:
    """README: "a refused job names its `index`". Only errors raised after validation
    (no-entry-point, unknown language, wasm_base64) carry `index`; a schema error of job 1
    (bad base64 in `grants.stdin`, a limit over its maximum) has no `index` member. And
    for `wasm_base64` the `errors[].loc` is `["body", "wasm_base64"]`, losing `jobs.1`.
    Measured: stdin → `{"type": ".../validation-error", "detail": "body.jobs.1.grants.stdin:
    Value error, …"}` without `index`; wasm_base64 → loc `["body","wasm_base64"]`."""
    r = cluster.http.post("/v1/jobs/batch", json={"jobs": [
        {"wat": NOOP}, {"wat": NOOP, "grants": {"stdin": "-__-"}}]})
    assert r.status_code == 422, r.text
    assert r.json().get("index") == 1, r.text
    r = cluster.http.post("/v1/jobs/batch", json={"jobs": [
        {"wat": NOOP}, {"wasm_base64": "-__-"}]})
    assert r.status_code == 422, r.text
    locs = [e["loc"] for e in r.json().get("errors", [])]
    assert all("jobs" in loc for loc in locs), locs


def test_empty_json_body_is_not_a_400(cluster: Cluster) -> None:
    """Issue 11: malformed JSON is 400. An empty body declared as application/json (not
    JSON at all) is a 422 "body: Field required" instead of 400 `malformed-json`
    (`--data-binary $'\\xff\\xfe'` and `{"wat":` are 400)."""
    r = cluster.http.post("/v1/jobs", content=b"", headers={"content-type": "application/json"})
    assert r.status_code == 400, (r.status_code, r.text)


def test_whole_seconds_setting_reports_a_false_range() -> None:
    """A bad WARDEN_* value must be reported with the allowed range. `WARDEN_JOB_TTL_S=90.5`
    (or `1e10`) says "must be a duration, at least 60s (default 86400s)": 90.5 is at least
    60 s; the real rule (whole seconds) is not said. Measured with `warden languages`:
    exit 2, that line."""
    out = _cli("languages", env={"WARDEN_JOB_TTL_S": "90.5"})
    assert out.returncode == 2, out
    line = out.stderr.decode()
    assert "whole" in line or "integer" in line, line


# -- CLI: submit and run disagree ----------------------------------------------------------
def test_submit_alters_source_that_is_not_utf8(cluster: Cluster, tmp_path: Path) -> None:
    """`warden submit` decodes the file with errors="replace" (service/cli.py), so source
    that is not UTF-8 is silently altered before it is sent; `warden run` compiles the
    bytes as they are. Measured with `puts("caf\\xe9")` in C: `warden run` prints
    63 61 66 e9 0a, `warden submit` prints 63 61 66 ef bf bd 0a (U+FFFD), exit 0 both.
    (Random bytes named .wasm likewise go as WAT: "WAT syntax error: unexpected character
    '\\u{fffd}'" with the garbage echoed, where `warden run` says "neither a WebAssembly
    binary … nor UTF-8 WAT text".) Submit should refuse such a file, not change it."""
    src = tmp_path / "latin1.c"
    src.write_bytes(b'#include <stdio.h>\nint main(void){fputs("caf\xe9\\n", stdout);return 0;}\n')
    out = _cli("submit", str(src), "--url", f"http://127.0.0.1:{cluster.port}", timeout=180)
    assert out.stdout != b"caf\xef\xbf\xbd\n", (out.returncode, out.stdout, out.stderr[-400:])
    assert out.returncode == 125 and b"UTF-8" in out.stderr, (out.returncode, out.stderr)
    noise = tmp_path / "noise.wasm"
    noise.write_bytes(b"\xff\xfe\x00garbage")
    out = _cli("submit", str(noise), "--url", f"http://127.0.0.1:{cluster.port}")
    assert out.returncode == 125 and b"nor UTF-8 WAT text" in out.stderr, out.stderr


def test_invalid_module_summary_prints_run_figures(tmp_path: Path) -> None:
    """A module that never ran still gets run figures: `warden run empty.wasm` (the 8-byte
    header only) prints `[warden] status=invalid_module time=91.55ms fuel=0 memory=0B
    compile=91.55ms` — its `wall_time_s` is the compile time (the API result has
    `wall_time_s` == `compile_time_s` too). Issue 11 removed these meaningless figures
    from compile errors only."""
    module = tmp_path / "empty.wasm"
    module.write_bytes(b"\0asm\x01\0\0\0")
    out = _cli("run", str(module))
    assert out.returncode == 125, out
    summary = out.stderr.decode()
    assert "status=invalid_module" in summary, summary
    assert "time=" not in summary and "fuel=0" not in summary, summary


# -- listing cursor ----------------------------------------------------------------------
def test_listing_cursor_skips_jobs_created_at_the_same_instant(tmp_path: Path) -> None:
    """`list_recent` pages by score only, with an exclusive bound `(<score>`: jobs whose
    `created_at` are equal (the zset's score; a coarse clock, or many creates in one
    microsecond) are skipped past the page boundary. Measured: three jobs created with the
    same time.time(), paged with limit=1 → 1 job seen, then next_cursor excludes the other
    two."""
    import redis

    from workers.redis_server import EmbeddedRedis
    from workers.store import JobStore

    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        store = JobStore(redis.Redis.from_url(server.url), job_ttl_s=3600, lease_s=10)
        spec = JobSpec(limits=Limits(), grants=Grants())
        ids = [f"review-tie-{i}" for i in range(3)]
        with mock.patch("workers.store.time.time", return_value=time.time()):
            for job_id in ids:
                store.create(job_id, spec)
        seen: list[str] = []
        cursor: float | None = None
        for _ in range(5):
            records, cursor = store.list_recent(1, None, cursor)
            seen += [r.id for r in records]
            if cursor is None:
                break
        assert sorted(seen) == ids, seen
    finally:
        server.stop()


# -- README: maxima that the default body cap makes unreachable ----------------------------
def test_documented_stdin_maximum_is_over_the_default_body_cap() -> None:
    """README's request table: `grants.stdin` at most 64 MiB (files 128 MiB, module 64 MiB);
    but the default `WARDEN_MAX_BODY_BYTES` is 32 MiB, and stdin travels as base64 (4/3):
    any stdin over ~24 MiB is a 413 `body-too-large` with the defaults. The documented
    maximum cannot be reached (neither the table nor the limits section says so)."""
    settings = Settings()
    needed = (MAX_STDIN_BYTES + 2) // 3 * 4 + 1024
    assert settings.max_body_bytes >= needed, (settings.max_body_bytes, needed)
