.PHONY: setup test train bench

setup:
	bash scripts/setup.sh

test:
	bash scripts/test.sh

train: setup
	.venv/bin/vlarl-fast train

bench: setup
	.venv/bin/vlarl-fast bench
