"""One module per console page: its GET handler and the actions its forms post."""
