"""nftables mode: a private table whose verdict maps and sets turn one
change into one element update."""
