"""The one-machine lab: every node is a network namespace on a private
bridge; the server and agents run inside them as background processes."""
