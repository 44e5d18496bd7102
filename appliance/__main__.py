"""`python -m appliance`: the same CLI as the `appliance` command (the server image's entry point)."""

from appliance.cli import main

main()
