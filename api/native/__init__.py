"""runstream's own read routes: experiment and run views, history, bulk history, live streams."""
