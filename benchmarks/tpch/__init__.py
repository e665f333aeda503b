"""Federated TPC-H (issue #3): data and federation setup, query runner."""
