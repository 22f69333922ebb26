"""Source jobs through the whole service: API → Redis → worker → jail/interpreter → result."""

from __future__ import annotations

import pytest

from sandboxes.languages.registry import LANGUAGES
from sandboxes.languages.source_runner import SourceRunner
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.settings import Settings
from tests.service.cluster import Cluster, stdout_of

SOURCES = {
    "c": '#include <stdio.h>\nint main(void) { char b[32]; if (fgets(b, 32, stdin))'
    ' printf("c %s", b); return 0; }\n',
    "cpp": '#include <iostream>\n#include <string>\nint main() { std::string s;'
    ' std::getline(std::cin, s); std::cout << "cpp " << s << "\\n"; }\n',
    "zig": 'const std = @import("std");\npub fn main(init: std.process.Init) !void {\n'
    "    var buf: [32]u8 = undefined;\n"
    "    const n = try std.Io.File.stdin().readStreaming(init.io, &.{&buf});\n"
    '    try std.Io.File.stdout().writeStreamingAll(init.io, "zig ");\n'
    "    try std.Io.File.stdout().writeStreamingAll(init.io, buf[0..n]);\n}\n",
    "rust": "fn main() { let mut s = String::new(); std::io::stdin().read_line(&mut s).unwrap();"
    ' print!("rust {}", s); }\n',
    "go": 'package main\n\nimport (\n\t"bufio"\n\t"fmt"\n\t"os"\n)\n\nfunc main() {\n'
    "\ts, _ := bufio.NewReader(os.Stdin).ReadString('\\n')\n\tfmt.Print(\"go \", s)\n}\n",
    "python": 'print("python", input())\n',
    "javascript": 'console.log("javascript " + readline());\n',
    "ruby": 'print "ruby ", $stdin.gets\n',
}


@pytest.fixture(scope="module", autouse=True)
def toolchains_built(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Build the machine-wide toolchain parts (zig sysroot, QuickJS) as install does."""
    SourceRunner(Sandbox(Settings(data_dir=tmp_path_factory.mktemp("warm")))).warm()


@pytest.mark.parametrize("lang", sorted(SOURCES))
def test_source_job_end_to_end(cluster: Cluster, lang: str) -> None:
    r = cluster.http.post(
        "/v1/jobs",
        # the most compile time a job may have: this cluster's data dir is new, so its
        # worker compiles each interpreter (Ruby: 93 MB of code) on its first job, in the
        # background at the lowest CPU priority, and the job waits for it that long
        json={"language": lang, "source": SOURCES[lang], "grants": {"stdin": "aGkK"},  # "hi\n"
              "limits": {"compile_time_s": 60}},
    )
    assert r.status_code == 202, r.text
    # The worker compiles the interpreter on its first Python job (seconds on a busy machine).
    record = cluster.wait_state(r.json()["id"], timeout_s=180)
    assert record["state"] == "finished", record
    assert record["result"]["status"] == "ok", record["result"]
    assert stdout_of(record) == f"{lang} hi\n".encode()


def test_compile_error_comes_back_as_a_result(cluster: Cluster) -> None:
    r = cluster.http.post(
        "/v1/jobs", params={"wait": 60},
        json={"language": "c", "source": "int main(void) { return nope; }\n"},
    )
    result = r.json()["result"]
    assert result["status"] == "compile_error"
    assert "nope" in result["compile_output"]


def test_languages_list_is_the_registry(cluster: Cluster) -> None:
    body = cluster.http.get("/v1/languages").json()
    assert [lang["id"] for lang in body] == list(LANGUAGES)
    rust = next(lang for lang in body if lang["id"] == "rust")
    assert "1.63" in rust["version"] and rust["judge0_id"] == 73
    # these workers have the bwrap jail and every toolchain: they serve every language
    assert all(lang["served"] is True for lang in body), body


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"language": "c", "source": "x", "compiler_flags": ["-I/etc"]},
         "compiler-flag-not-allowed"),
        ({"language": "python", "source": "x", "grants": {"files": {"app/x.py": ""}}},
         "reserved-path"),
        ({"language": "cobol", "source": "x"}, "unknown-language"),
        ({"wat": "(module)", "compiler_flags": ["-O2"]}, "validation-error"),
    ],
)
def test_bad_source_jobs_are_refused(
    cluster: Cluster, body: dict[str, object], problem: str
) -> None:
    r = cluster.http.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/" + problem)
