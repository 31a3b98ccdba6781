"""The pure core: money, calendars, schedules, APR, products and quotes.

Nothing here reads a clock, a file, a database or the environment; today's date is an argument.
tests/unit/test_layering.py keeps it that way.
"""
