"""Benchmarks run by hand (`make bench`); each module compares imagelearn with what users would pick instead."""
