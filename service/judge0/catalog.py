"""What Judge0's information endpoints answer, from Warden's own sources of truth: the
language registry (each language's stable Judge0 id), the limit bounds, the settings.

Judge0's status ids are a closed set of 14 (the official SDK raises on any other id), so
Warden's outcomes map onto them here, in one place, and no new id is ever invented.
"""

from __future__ import annotations

from typing import Any, Final

from sandboxes.languages.registry import LANGUAGES, Language
from sandboxes.schema import LIMIT_BOUNDS, KiB, MiB
from sandboxes.settings import Settings

VERSION: Final = "1.13.1"  # the SDK maps language names only for versions it knows

# Judge0 CE 1.13.1's statuses (id, description), in id order.
STATUSES: Final = (
    (1, "In Queue"), (2, "Processing"), (3, "Accepted"), (4, "Wrong Answer"),
    (5, "Time Limit Exceeded"), (6, "Compilation Error"), (7, "Runtime Error (SIGSEGV)"),
    (8, "Runtime Error (SIGXFSZ)"), (9, "Runtime Error (SIGFPE)"),
    (10, "Runtime Error (SIGABRT)"), (11, "Runtime Error (NZEC)"),
    (12, "Runtime Error (Other)"), (13, "Internal Error"), (14, "Exec Format Error"),
)
MAX_BATCH: Final = 20  # Judge0's MAX_SUBMISSION_BATCH_SIZE default
MAX_EXTRACT_BYTES: Final = 10 * MiB  # additional_files, unpacked (Judge0's max_extract_size)
MAX_PER_PAGE: Final = 100  # GET /submissions (Judge0 has no cap: Warden reads one page)


def about() -> dict[str, str]:
    return {"version": VERSION, "homepage": "https://github.com/warden",
            "source_code": "https://github.com/warden",
            "maintainer": "Warden (a Judge0 CE 1.13.1-compatible API over WebAssembly)"}


def language_name(language: Language) -> str:
    """Judge0 shows "Name (version)"; Warden's say what really runs (QuickJS, not Node)."""
    return f"{language.name} ({language.version})"


def languages() -> list[dict[str, Any]]:
    return [{"id": lang.judge0_id, "name": language_name(lang)}
            for lang in sorted(LANGUAGES.values(), key=lambda lang: lang.judge0_id)]


def language(judge0_id: int) -> dict[str, Any] | None:
    for lang in LANGUAGES.values():
        if lang.judge0_id == judge0_id:
            return {"id": lang.judge0_id, "name": language_name(lang), "is_archived": False,
                    "source_file": lang.file_name, "compile_cmd": lang.compile_command,
                    "run_cmd": "warden (WebAssembly, wasmtime)"}
    return None


def statuses() -> list[dict[str, Any]]:
    return [{"id": i, "description": d} for i, d in STATUSES]


def config_info(settings: Settings) -> dict[str, Any]:
    """Every field Judge0 1.13.1 returns (the SDK's Config model requires all 41), with
    Warden's real values: times in seconds, sizes in KB as Judge0 counts them."""
    wall, memory = LIMIT_BOUNDS["wall_time_s"], LIMIT_BOUNDS["memory_bytes"]
    stack, stdout = LIMIT_BOUNDS["stack_bytes"], LIMIT_BOUNDS["stdout_bytes"]
    max_cpu = LIMIT_BOUNDS["fuel"].maximum / settings.judge_fuel_per_second
    return {
        "maintenance_mode": False,
        "enable_wait_result": True,
        "enable_compiler_options": True,
        "allowed_languages_for_compile_options": [],
        "enable_command_line_arguments": True,
        "enable_submission_delete": True,
        "enable_callbacks": settings.callbacks_enabled,
        "callbacks_max_tries": settings.callback_max_attempts,
        "callbacks_timeout": settings.callback_timeout_s,
        "enable_additional_files": True,
        "max_queue_size": settings.max_queue_length,
        "cpu_time_limit": 5.0,
        "max_cpu_time_limit": round(min(max_cpu, wall.maximum), 3),
        "cpu_extra_time": 1.0,
        "max_cpu_extra_time": 5.0,
        "wall_time_limit": wall.default,
        "max_wall_time_limit": wall.maximum,
        "memory_limit": int(memory.default // KiB),
        "max_memory_limit": int(memory.maximum // KiB),
        "stack_limit": int(stack.default // KiB),
        "max_stack_limit": int(stack.maximum // KiB),
        "max_processes_and_or_threads": 1,  # a WebAssembly guest is one thread, no fork
        "max_max_processes_and_or_threads": 1,
        "enable_per_process_and_thread_time_limit": False,
        "allow_enable_per_process_and_thread_time_limit": False,
        "enable_per_process_and_thread_memory_limit": False,
        "allow_enable_per_process_and_thread_memory_limit": False,
        "max_file_size": int(stdout.default // KiB),
        "max_max_file_size": int(stdout.maximum // KiB),
        "number_of_runs": 1,  # fuel is deterministic: another run measures the same
        "max_number_of_runs": 1,
        "redirect_stderr_to_stdout": False,
        "max_extract_size": MAX_EXTRACT_BYTES // KiB,
        "enable_batched_submissions": True,
        "max_submission_batch_size": MAX_BATCH,
        "submission_cache_duration": 1.0,
        "use_docs_as_homepage": False,
        "enable_network": False,
        "allow_enable_network": False,
    }
