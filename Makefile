# lifeboat — backup and restore for self-hosted platforms.
#
#   make demo        the main job: a real backup → destroy → restore → compare drill on a local lab
#   make test        every test, against real services on loopback (brings the lab up, and down again)
#
# Everything runs as root on Debian 12; Debian packages come from apt-get, npm packages from `npm ci`.

SHELL := /bin/bash
ZX    := npx zx
RUN   := $(ZX) tasks/run.ts
# npx picks up tsx through .npmrc (node-options); NODE_OPTIONS is not exported here,
# because npm ci itself runs on node before tsx is installed.
export npm_config_update_notifier := false

.PHONY: help deps demo test test-unit typecheck lab-up lab-down lab-status \
        backup-deis restore-deis drill-deis backup-hoss restore-hoss drill-hoss \
        verify list prune bench drill-archive

help:
	@sed -n 's/^#   //p' Makefile
	@echo "  other targets: deps typecheck test-unit lab-up lab-down lab-status drill-archive"
	@echo "                 backup-deis restore-deis drill-deis backup-hoss restore-hoss drill-hoss"
	@echo "                 verify ARCHIVE=… | list DIR=… | prune DIR=… ARGS='--keep-last 3' | bench"

# node_modules from the committed lock file; re-run only when the lock changes.
node_modules/.deps-stamp: package-lock.json package.json
	@command -v node >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: node_modules/.deps-stamp

typecheck: deps
	npx tsc --noEmit -p .

demo: deps
	bash test/demo.sh

test: deps
	bash test/run.sh

test-unit: deps
	bash test/run.sh --unit

lab-up: deps
	bash test/lab/lab.sh up
lab-down:
	bash test/lab/lab.sh down
lab-status:
	bash test/lab/lab.sh status

drill-archive: deps
	$(RUN) drill:archive

backup-deis: deps
	$(ZX) recipes/deis-backup.ts $(ARGS)
restore-deis: deps
	$(ZX) recipes/deis-restore.ts $(ARGS)
drill-deis: deps
	$(RUN) drill:deis $(ARGS)

backup-hoss: deps
	$(ZX) recipes/hoss-backup.ts $(ARGS)
restore-hoss: deps
	$(ZX) recipes/hoss-restore.ts $(ARGS)
drill-hoss: deps
	$(RUN) drill:hoss $(ARGS)

verify: deps
	$(RUN) archive:verify $(ARCHIVE) $(ARGS)
list: deps
	$(RUN) archive:list $(DIR) $(ARGS)
prune: deps
	$(RUN) archive:prune $(DIR) $(ARGS)

bench: deps
	bash bench/run.sh
