# Cross-paper rules (leaderboard, diff, HTML report) are added here.
SHARED_TARGETS.append("reports/models.json")
