"""Benchmarks (`make bench`, `python -m bench [cold-start|inbound|capacity|profile-api]`).

Each figure is measured against something in the same run: a baseline process (cold start), one
writer (inbound latency), the AWS floor per message (capacity).
"""
