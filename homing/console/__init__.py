"""The web console, served by the same process under /console."""
