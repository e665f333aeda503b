"""What a plan is made of: physical steps, encodings, secure expressions, schemas, DP calibration.

The planner builds plans from these types and the executors run them; neither imports the other
(tests/test_import_graph.py). Nothing here imports the planner, the executors or the node.
"""
