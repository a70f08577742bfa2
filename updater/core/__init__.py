"""The pure core: records, rules, the client/server contract, the plan, errors and the report.

Imports nothing but the standard library and does no I/O (the report writes the one message a
command ends with to the stream it is given). Every program builds on it; it builds on none.
"""
