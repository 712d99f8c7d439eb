"""shared.budget_report's fixed start-up cost: the fastest paper results job (the lightest job that loads torch and the config)."""

from shared.budget_report import startup_seconds


def test_start_up_is_the_fastest_results_job_and_nothing_else():
    measured = {
        "gradcam_results": {"s": 4.0}, "daam_results": {"s": 2.5}, "eigencam_results": {"s": float("nan")},
        "gradcam_sanity": {"s": 1.0}, "leaderboard": {"s": 0.5},
    }
    assert startup_seconds(measured) == 2.5
    assert startup_seconds({"gradcam_sanity": {"s": 1.0}}) == 0.0
