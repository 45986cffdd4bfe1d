"""Export targets. Each `export(options, progress)` writes its folder atomically, validates what it
wrote (its own smoke test) before reporting success, and leaves a manifest.json."""
