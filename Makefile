# lifeboat — backup and restore for self-hosted platforms.
#
#   make demo                  the main job: a real backup → destroy → restore → compare drill on a local lab (DRILL=hoss|archive for the others)
#   make test                  every test, against real services on loopback (brings the lab pieces up, and down again)
#   make test-unit             only the tests that need no lab
#   make typecheck             tsc --noEmit
#   make drill-deis            the Deis drill (lab: docker sshd ceph); ARGS="--keep" keeps its folder
#   make drill-hoss            the Hoss drill (lab: docker slapd)
#   make drill-hcoop           the HCoop drill: three days of AFS volume dumps, restore day 2 and 3, refusals (lab: afs)
#   make drill-lambdastack     the LambdaStack drill: 5 components on 3 hosts, one fan-out backup, refusals, recover onto the same and onto 3 new hosts (lab: docker lshosts; ~4 min)
#   make drill-xenon           the Xenon drill on stand-in hosts: ZIP, point in time, STREAM + http restore, DIRECTORY runs 2 and 3, refusals (no lab)
#   make drill-archive         the archive drill on local files (no lab)
#   make fault-matrix          every recipe under SIGINT/SIGTERM/SIGKILL, dying remotes and full disks, then continued and verified (lab: docker sshd ceph slapd afs; several hours at full size); ARGS="--recipes deis-backup --seed N"
#   make drill-faults          the same as make fault-matrix (the drill task's own name)
#   make backup-deis           recipes/deis-backup.ts ARGS="--config site.yaml"
#   make restore-deis          recipes/deis-restore.ts ARGS="--config site.yaml ARCHIVE"
#   make backup-hoss           recipes/hoss-backup.ts ARGS="--config site.yaml"
#   make restore-hoss          recipes/hoss-restore.ts ARGS="--config site.yaml ARCHIVE"
#   make backup-hcoop          recipes/hcoop-backup.ts ARGS="--config site.yaml"
#   make restore-hcoop         recipes/hcoop-restore.ts ARGS="DATE VOLNAME [NEWNAME] --config site.yaml"
#   make restore-hcoop-db      recipes/hcoop-restore-db.ts ARGS="DATE [DATABASE] --config site.yaml"
#   make backup-lambdastack    recipes/lambdastack-backup.ts ARGS="-b BUILD_DIR [-t TARGET_PATH] [-f backup.yml]"
#   make recover-lambdastack   recipes/lambdastack-recovery.ts ARGS="-b BUILD_DIR [-f recovery.yml] [--yes]"
#   make backup-xenon          recipes/xenon-backup.ts ARGS="--config site.yaml [--backup.type ZIP|DIRECTORY|STREAM]"
#   make restore-xenon         recipes/xenon-restore.ts ARGS="ARCHIVE|RUN --config site.yaml"
#   make verify                archive:verify ARCHIVE=…
#   make list                  archive:list DIR=…
#   make prune                 archive:prune DIR=… ARGS="--keep-last 3"
#   make bench                 the benchmarks (bench/README.md)
#   make lab-up                install and start every lab piece (idempotent)
#   make lab-down              stop every lab piece
#   make lab-status            which lab pieces are up
#   make deps                  node_modules from the lock file (and node when there is none)
#
# Every drill (make demo, make drill-X, npx zx tasks/run.ts drill:X) brings up the lab pieces it
# needs and stops again the ones it started (tasks/drills/lab.ts). Everything runs as root on
# Debian 12; Debian packages come from apt-get, npm packages from `npm ci`.

SHELL := /bin/bash
ZX    := npx zx
RUN   := $(ZX) tasks/run.ts
# Recipes, tasks and tests run on the project's node, node_modules/.bin/node (package.json pins
# it; `npm ci` installs it from the npm registry), which runs TypeScript itself (type stripping).
# `npm ci` runs on the machine's node (the PATH it had before), and .npmrc turns on Node's
# compile cache for everything npx starts.
HOST_PATH := $(PATH)
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
export npm_config_update_notifier := false

.PHONY: help deps demo test test-unit typecheck lab-up lab-down lab-status \
        backup-deis restore-deis drill-deis backup-hoss restore-hoss drill-hoss \
        backup-hcoop restore-hcoop restore-hcoop-db drill-hcoop \
        backup-lambdastack recover-lambdastack drill-lambdastack \
        backup-xenon restore-xenon drill-xenon \
        verify list prune bench drill-archive fault-matrix drill-faults

# The lines "#   make TARGET  what it does" above; test/layout.test.ts checks each names a target here.
help:
	@sed -n 's/^#   //p' Makefile

# node_modules from the committed lock file; re-run only when the lock changes.
node_modules/.deps-stamp: package-lock.json package.json
	@PATH="$(HOST_PATH)"; command -v node >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
	PATH="$(HOST_PATH)" npm ci --no-audit --no-fund --loglevel=error
	@node_modules/.bin/node --version >/dev/null
	@touch $@

deps: node_modules/.deps-stamp
	@command -v pigz >/dev/null && command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq pigz zstd; } # archives: pigz, zstd

typecheck: deps
	npx tsc --noEmit -p .

# DRILL=hoss make demo, DRILL=archive make demo
DRILL ?= deis
demo: deps
	$(RUN) drill:$(DRILL) $(ARGS)

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

# The fault matrix (tasks/drills/faults.ts); test/faults.test.ts runs a reduced size of it.
drill-faults: deps
	$(RUN) drill:faults $(ARGS)
fault-matrix: drill-faults

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

backup-hcoop: deps
	$(ZX) recipes/hcoop-backup.ts $(ARGS)
restore-hcoop: deps
	$(ZX) recipes/hcoop-restore.ts $(ARGS)
restore-hcoop-db: deps
	$(ZX) recipes/hcoop-restore-db.ts $(ARGS)
drill-hcoop: deps
	$(RUN) drill:hcoop $(ARGS)
backup-lambdastack: deps
	$(ZX) recipes/lambdastack-backup.ts $(ARGS)
recover-lambdastack: deps
	$(ZX) recipes/lambdastack-recovery.ts $(ARGS)
drill-lambdastack: deps
	$(RUN) drill:lambdastack $(ARGS)

backup-xenon: deps
	$(ZX) recipes/xenon-backup.ts $(ARGS)
restore-xenon: deps
	$(ZX) recipes/xenon-restore.ts $(ARGS)
drill-xenon: deps
	$(RUN) drill:xenon $(ARGS)

# A make variable as one shell word (nothing when empty): DIR may hold spaces or quotes. (ARCHIVE
# stays as the shell splits and globs it: verify takes several archives, ARCHIVE="backups/*.tar.gz".)
shq = $(if $(1),'$(subst ','\'',$(1))',)

verify: deps
	$(RUN) archive:verify $(ARCHIVE) $(ARGS)
list: deps
	$(RUN) archive:list $(call shq,$(DIR)) $(ARGS)
prune: deps
	$(RUN) archive:prune $(call shq,$(DIR)) $(ARGS)

bench: deps
	bash bench/run.sh
