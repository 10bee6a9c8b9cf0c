"""Cross-language test vectors (JSON) and the script that regenerates them."""
