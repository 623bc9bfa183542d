"""Use cases shared by the API and the console: each module does one job (publish, retry from
the DLQ, create a schedule, rotate keys) on the node's `Services`, so that the two front ends
parse, call and render, and agree on every rule between."""
