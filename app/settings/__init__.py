"""The settings, validated once: the environment and env file (env.py), the shim's (shim.py) and the
scripts' (scripts.py). They import nothing from the HTTP answers or the progress code above them."""
