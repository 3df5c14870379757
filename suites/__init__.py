"""The built-in suites: every YAML file in this folder is a suite (`pai-bench list suites`)."""
