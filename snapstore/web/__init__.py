"""``snap ui``: a local web dashboard over a repository, beside the CLI (neither imports the other).

app (routes and pages), guard (token, Host and CSRF checks), access (one shared open repository),
jobs (restores in the background), plots (server-side SVG), metrics (Prometheus), server (uvicorn).
Pages call the same core functions as the CLI; the web layer only renders.
"""
