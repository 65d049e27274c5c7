"""The two faces of meshstep: the `meshstep` command (cli.py, commands/) and the Streamlit app (streamlit_app.py,
views/). Thin: they read sources, call the rooms below and write only through `state`."""
