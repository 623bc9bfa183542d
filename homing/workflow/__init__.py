"""Upstash Workflow on Homing: the pure rules (no I/O, no clock).

`control` reads the workflow control headers of a publish and composes what a run's deliveries
carry; `steps` builds the step list the SDKs parse and identifies repeated step results; `runs`
decides how a run's configuration applies to its messages, what a run's failure sends, and what
the run-end and cancel requests answer.
"""
