"""Graph insight (issue 16): per-node figures for the graph overlays and the node table."""
