"""The baseline for the throughput ratio: a bare Flask app returning a small JSON dict, nothing else.

Served by ``bench/customer_list.py`` as ``gunicorn -w N --chdir bench bare_app:app``.
"""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/ping")
def ping():
    return jsonify({"ok": True, "service": "bare", "items": [1, 2, 3]})
