"""Fuzzing: schemathesis generates requests from Homing's own /openapi.json, valid ones and
deliberately invalid ones, and every answer must be a non-5xx that matches the schema.

It found `GET /v2/events?cursor=Inf` -> 500 (now pinned in test_malformed_numbers.py).

The server cannot send anything anywhere: it runs in `serve` mode (private destinations
refused), with a resolver that refuses every name, inside a ConnectionGuard that stops every
socket connect except the fuzzer's to the server itself, and every name lookup.

At least 2,000 cases run in the fast tier; the soak tier (HOMING_SOAK=1) runs 20,000.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from homing.api.openapi import openapi_document
from tests.reliability.support import SOAK, SOAK_REASON
from tests.security.guard import ConnectionGuard
from tests.security.support import RecordingResolver
from tests.support.server import DEV_TOKEN, RunningServer

PER_OPERATION_AND_MODE = 40
MIN_CASES = 2000


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    start_server: Callable[..., RunningServer],
) -> None:
    run_fuzz(start_server, per_operation_and_mode=PER_OPERATION_AND_MODE, min_cases=MIN_CASES)


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason=SOAK_REASON)
@pytest.mark.timeout(3600)
def test_soak_schemathesis_twenty_thousand_cases(
    start_server: Callable[..., RunningServer],
) -> None:
    run_fuzz(
        start_server, per_operation_and_mode=10 * PER_OPERATION_AND_MODE, min_cases=10 * MIN_CASES
    )


def run_fuzz(
    start_server: Callable[..., RunningServer], *, per_operation_and_mode: int, min_cases: int
) -> None:
    started = time.monotonic()
    server = start_server(
        mode="serve", allow_private_destinations=False, resolve=RecordingResolver({})
    )
    schema = schemathesis.openapi.from_dict(openapi_document())
    operations = [result.ok() for result in schema.get_all_operations()]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {DEV_TOKEN}"
    statuses: Counter[str] = Counter()
    server_errors: list[str] = []
    violations: list[str] = []
    cases = 0
    with ConnectionGuard(allow={("127.0.0.1", server.port)}) as guard:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @settings(
                    max_examples=per_operation_and_mode,
                    deadline=None,
                    database=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy(generation_mode=mode))
                def run(case: schemathesis.Case) -> None:
                    nonlocal cases
                    cases += 1
                    response = case.call(base_url=server.base_url, session=session, timeout=10)
                    statuses[f"{response.status_code // 100}xx"] += 1
                    label = f"{case.method} {case.formatted_path}"
                    if response.status_code >= 500:
                        curl = case.as_curl_command()[:300]
                        server_errors.append(
                            f"{label} -> {response.status_code} {response.text[:80]} | {curl}"
                        )
                        return
                    try:
                        case.validate_response(
                            response, checks=[not_a_server_error, response_schema_conformance]
                        )
                    except Exception as exc:  # schemathesis reports failures as exceptions
                        violations.append(f"{label} -> {response.status_code}: {str(exc)[:200]}")

                run()
    print(
        f"\nfuzz: operations={len(operations)} cases={cases} statuses={dict(statuses)} "
        f"server_errors={len(server_errors)} "
        f"schema_violations={len(violations)} "
        f"connects_refused_by_guard={len(guard.refused)} seconds={time.monotonic() - started:.1f}"
    )
    for line in (server_errors + violations)[:10]:
        print("  ", line)
    assert cases >= min_cases
    assert server_errors == []
    assert violations == []
    assert guard.refused == []


@pytest.mark.parametrize("path", ["/openapi.json"])
def test_the_fuzzed_document_is_the_one_served(
    start_server: Callable[..., RunningServer], path: str
) -> None:
    server = start_server()
    assert requests.get(server.base_url + path, timeout=10).json() == openapi_document()
