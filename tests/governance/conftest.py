"""Keep pytest from importing the scanner's samples: they are data, written to break the rules."""

collect_ignore_glob = ["samples/*"]
