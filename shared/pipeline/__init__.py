"""Generic workflow steps every paper reuses: explain a split, score the maps, aggregate the
scores into results with confidence intervals, render tables, and judge claims."""
