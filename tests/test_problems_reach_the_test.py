"""Problems the server sees reach the test that caused them: engine errors, unmatched requests, a lingering outage."""

from __future__ import annotations

import httpx
import pytest

from comfy_cassettes.control import ReplayControl
from comfy_cassettes.replay.server import ReplayServer

def test_an_unmatched_request_fails_the_test_with_the_closest_recordings(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import httpx
        import pytest

        def test_typo(comfy):
            assert httpx.get(comfy.url + "/system_stat").status_code == 404

        @pytest.mark.comfy_cassette(allow_unmatched=True)
        def test_expected(comfy):
            assert httpx.get(comfy.url + "/no/such/route").status_code == 404

        def test_clean(comfy):
            assert httpx.get(comfy.url + "/system_stats").status_code == 200
        """
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=3, errors=1)
    output = result.stdout.str()
    assert "ERROR at teardown of test_typo" in output
    assert "unmatched request: GET /system_stat" in output and "closest: GET /system_stats: path /system_stats != /system_stat" in output
    assert "allow_unmatched=True" in output
    assert "test_expected" not in output.split("short test summary info")[-1]


def test_an_engine_error_fails_the_test(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        def test_broken(comfy, monkeypatch):
            engine = comfy.server.engine
            def explode(*args, **kwargs):
                raise RuntimeError("boom in the engine")
            monkeypatch.setattr(engine, "queue_view", explode)
            import httpx
            assert httpx.get(comfy.url + "/queue").status_code == 500

        def test_next_is_clean(comfy):
            assert comfy.problems() == {"errors": [], "unmatched": []}
        """
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=2, errors=1)
    assert "engine error: GET /queue raised RuntimeError('boom in the engine')" in result.stdout.str()


def test_a_test_that_ends_inside_a_down_period_does_not_break_the_next(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import httpx

        def test_leaves_the_server_down(comfy):
            comfy.down(30.0)
            import time
            time.sleep(0.1)
            try:
                httpx.get(comfy.url + "/system_stats", timeout=2)
            except httpx.TransportError:
                pass
            else:
                raise AssertionError("the server should refuse connections while down")

        def test_next_test_gets_a_serving_server(comfy):
            assert httpx.get(comfy.url + "/system_stats").status_code == 200
            assert comfy.faults() == []
        """
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=2)


def test_check_raises_with_the_report_for_other_harnesses(start_server) -> None:
    server: ReplayServer = start_server("basic_save")
    with ReplayControl(server.url) as control:
        control.check()
        httpx.get(server.url + "/view_metadata/loras")
        problems = control.problems()
        assert problems["errors"] == [] and problems["unmatched"][0]["request"] == "GET /view_metadata/loras"
        with pytest.raises(AssertionError, match="unmatched request: GET /view_metadata/loras"):
            control.check()
        control.check(allow_unmatched=True)
        control.reset()
        control.check()


def test_a_down_period_can_be_ended_early_in_process(start_server) -> None:
    server: ReplayServer = start_server("basic_save")
    with ReplayControl(server.url) as control:
        control.down(60.0)
    import time

    time.sleep(0.1)
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/queue", timeout=2)
    assert server.end_down() is True
    assert httpx.get(server.url + "/queue").status_code == 200
    assert server.end_down() is False
