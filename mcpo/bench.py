"""Throughput benchmark (placeholder until written below)."""


def add_arguments(p):
    pass


def run_from_args(ns):
    return 0
