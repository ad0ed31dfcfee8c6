"""The sample service that soakwatch's demo and tests soak (see ``app.py``)."""
