"""The owner's web console (issue #16 item 2): a party's audit chain, budgets and policies in a browser.

server.py serves it (inside the node, `console = "127.0.0.1:8088"`), registry.py holds its pages,
pages.py the built-in ones, html.py the escaping HTML helpers, audit_index.py the query index.
"""
