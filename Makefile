# Everyday commands. `make` alone lists them; each target's `## text` is its help line.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

COMPOSE ?= docker compose
# Files written into ./app by the containers belong to you (root on the host maps to 1000 in the image).
APP_UID ?= $(shell id -u | sed 's/^0$$/1000/')
APP_GID ?= $(shell id -g | sed 's/^0$$/1000/')
export APP_UID APP_GID
# Commands that write into your checkout (fmt, makemigrations) run as you, so the files stay yours.
HOST_USER := $(shell id -u):$(shell id -g)
ARGS ?=

# Tools run in the development image with the whole repository mounted, without waiting for any service.
TOOLS = $(COMPOSE) run --rm --no-deps --entrypoint "" -v "$(CURDIR):/src" -w /src \
	-e RUFF_CACHE_DIR=/tmp/ruff -e MYPY_CACHE_DIR=/tmp/mypy

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# A start that fails says why in the logs of what did not become healthy: show their last lines.
# $(1): the compose command the services were started with.
SHOW_UNHEALTHY = bash compose/show-unhealthy $(1)

# A variable's value as Compose reads the env files (quotes, ${...}, comments), for a recipe's shell: env files are
# never sourced as shell code, which Compose's syntax is not. $(1): the compose command, $(2): the name, $(3): the
# value when it is unset or empty.
ENV_VALUE = $$($(1) config --environment | sed -n 's/^$(2)=//p' | grep . || echo '$(3)')

# For the recipes that write env files: `secret N` prints N random letters and digits.
DEFINE_SECRET = secret() { LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c "$$1"; }

# A fresh clone has no .env: make one from .env.example with new random secrets, and a compose project name of its
# own (docker-compose.yml's name and a random suffix).
.env:
	@$(DEFINE_SECRET); \
	suffix=$$(LC_ALL=C tr -dc 'a-z0-9' </dev/urandom | head -c 6 || true); \
	sed -e "s|^DJANGO_SECRET_KEY=.*|DJANGO_SECRET_KEY=$$(secret 50)|" \
	    -e "s|^POSTGRES_PASSWORD=.*|POSTGRES_PASSWORD=$$(secret 32)|" \
	    -e "s|^FLOWER_PASSWORD=.*|FLOWER_PASSWORD=$$(secret 24)|" \
	    -e "s|^COMPOSE_PROJECT_NAME=.*|COMPOSE_PROJECT_NAME=$$(sed -n 's/^name: *//p' docker-compose.yml)-$$suffix|" \
	    .env.example > .env
	@echo "wrote .env with fresh random secrets (compose project $$(sed -n 's/^COMPOSE_PROJECT_NAME=//p' .env))"

.PHONY: build
build: .env ## build the development image
	$(COMPOSE) build

.PHONY: up
up: .env ## build, start every service, wait until all are healthy, print the URLs
	@$(COMPOSE) up -d --build --wait --wait-timeout 180 || { $(call SHOW_UNHEALTHY,$(COMPOSE)); exit 1; }
	@echo ""; \
	echo "  Django   http://localhost:$(call ENV_VALUE,$(COMPOSE),WEB_PORT,8000)/        (admin: /admin/, create a user with 'make createsuperuser')"; \
	echo "  Flower   http://localhost:$(call ENV_VALUE,$(COMPOSE),FLOWER_PORT,5555)/    (user $(call ENV_VALUE,$(COMPOSE),FLOWER_USER,), password FLOWER_PASSWORD in .env)"; \
	echo ""

.PHONY: down
down: ## stop and remove the containers (data volumes stay)
	$(COMPOSE) --profile "*" down --remove-orphans

.PHONY: logs
logs: ## follow the logs (ARGS="worker" for one service)
	$(COMPOSE) logs -f --tail 100 $(ARGS)

.PHONY: ps
ps: ## list the containers and their health
	$(COMPOSE) ps -a

.PHONY: shell
shell: ## a Django shell in the running web container
	$(COMPOSE) exec web python manage.py shell

.PHONY: manage
manage: ## any manage.py command, e.g. make manage ARGS="showmigrations"
	$(COMPOSE) exec web python manage.py $(ARGS)

.PHONY: migrate
migrate: ## apply migrations
	$(COMPOSE) exec web python manage.py migrate

.PHONY: makemigrations
makemigrations: ## create migrations for model changes
	$(COMPOSE) exec --user "$(HOST_USER)" web python manage.py makemigrations $(ARGS)

.PHONY: createsuperuser
createsuperuser: ## create an admin user
	$(COMPOSE) exec web python manage.py createsuperuser

.PHONY: test
test: .env ## run the tests in a container, with a real gevent worker, Postgres and Redis (ARGS: pytest's)
	@COMPOSE="$(COMPOSE)" bash tools/run-tests $(ARGS)

.PHONY: smoke
smoke: .env ## check the running stack (make up first) from inside its network
	@unhealthy=$$($(COMPOSE) ps --format '{{.Service}} {{.Health}}' web worker beat flower postgres redis | grep -v ' healthy$$' || true); \
	if [ -n "$$unhealthy" ]; then echo "not healthy: $$unhealthy (run make up)"; exit 1; fi
	$(COMPOSE) --profile smoke run --rm smoke
	@COMPOSE="$(COMPOSE)" bash tools/smoke/worker-comes-back

.PHONY: chaos
chaos: .env ## inject faults (worker killed, Postgres and Redis restarted or down) into a stack of its own; fails on any loss
	bash tools/chaos/chaos $(ARGS)

.PHONY: bench
bench: up ## benchmark workers by pool and workload, and the web tier; prints a table, writes bench-results/*.json
	@mkdir -p bench-results && chmod 777 bench-results
	$(COMPOSE) --profile bench run --rm bench

.PHONY: bench-fleet
bench-fleet: .env ## what 1,000 idle consumers cost Redis per task, the transport's against stock kombu's (FLEET_CONSUMERS=N)
	$(COMPOSE) --profile bench up -d --wait bench-redis
	$(COMPOSE) --profile bench run --rm --no-deps -e FLEET_COMPARE -e FLEET_CONSUMERS=$${FLEET_CONSUMERS:-1000} bench python /bench/fleet.py
	$(COMPOSE) --profile bench rm -sf bench-redis

.PHONY: bench-stack
bench-stack: .env ## time make up, measure the stack's memory and idle CPU, and how fast a code change goes live
	bash tools/bench/stack-figures

.PHONY: lint
lint: .env ## ruff, mypy, makemigrations --check, compose config, shellcheck, hadolint, jactionlint, Markdown links
	@$(COMPOSE) build --quiet web
	$(COMPOSE) config -q
	PROD_ENV_FILE=.env.prod.example $(COMPOSE) -f docker-compose.prod.yml --env-file .env.prod.example config -q
	$(TOOLS) web bash tools/lint

.PHONY: fmt
fmt: .env ## format and autofix with ruff
	@$(COMPOSE) build --quiet web
	$(TOOLS) --user "$(HOST_USER)" web bash -c 'ruff format . && ruff check --fix .'

# uv in an image stage of its own (the uv service), as you: it builds while uv.lock is out of date.
UV = $(COMPOSE) --profile tools run --rm --build --user "$(HOST_USER)" uv

.PHONY: add
add: .env ## add a dependency to pyproject.toml and uv.lock: PACKAGE=<name>[<version spec>] [GROUP=dev]; make up installs it
	@[[ -n "$(PACKAGE)" ]] || { echo "usage: make add PACKAGE=<name> [GROUP=dev]" >&2; exit 2; }
	$(UV) add --no-sync $(if $(GROUP),--group "$(GROUP)") "$(PACKAGE)"

.PHONY: lock
lock: .env ## update uv.lock after a hand edit of pyproject.toml; make up installs what changed
	$(UV) lock

.PHONY: init
init: ## make this clone your project: NAME=<package name> [EXAMPLES=keep|drop] [NEW_HISTORY=yes|no]
	@bash tools/init/init-project "$(NAME)" "$(EXAMPLES)" "$(NEW_HISTORY)"
	@if [ -f .env ]; then mv .env .env.before-init; echo "init: your .env is now .env.before-init"; fi
	@$(MAKE) --no-print-directory .env

.PHONY: clean
clean: ## remove containers, volumes and the locally built images
	$(COMPOSE) --profile "*" down --volumes --remove-orphans --rmi local

# --- production ---
# docker-compose.prod.yml, run as a compose project of its own (its containers, volumes and networks never mix
# with the development stack's), with .env.prod as its environment. deploy/README.md is the guide.
PROD_PROJECT ?= django-celery-stack-prod
PROD_ENV ?= .env.prod
# Your own docker-compose.prod.override.yml, when there is one, is layered on top (limits, secret files).
PROD_FILES = -f docker-compose.prod.yml $(if $(wildcard docker-compose.prod.override.yml),-f docker-compose.prod.override.yml)
# Commands that only stop or list (prod-down, prod-ps, ...) work before .env.prod exists, with the example's values.
PROD_ENV_IN_USE = $(or $(wildcard $(PROD_ENV)),.env.prod.example)
PROD_COMPOSE = $(COMPOSE) -p $(PROD_PROJECT) $(PROD_FILES) --env-file $(PROD_ENV_IN_USE)
# The same file is the app containers' env_file (docker-compose.prod.yml): every variable in it reaches them.
export PROD_ENV_FILE = $(abspath $(PROD_ENV_IN_USE))
# What `make prod-env` (or a first prod-up) writes into .env.prod: the site's domain, and `internal` (Caddy's own
# CA, for a test machine) or the email address the CA writes to about a real certificate.
DOMAIN ?= localhost
CADDY_TLS ?= internal
# Given on the command line they are meant for .env.prod only: exported, they would override it in compose.
unexport DOMAIN CADDY_TLS
BACKUP_DIR ?= backups
PYTHON_IMAGE ?= python:3.13-slim
# The longer production commands (up, roll, backup, restore, env): deploy/production.
PRODUCTION = PROD_COMPOSE="$(PROD_COMPOSE)" PROD_ENV="$(PROD_ENV)" PROD_PROJECT="$(PROD_PROJECT)" \
	BACKUP_DIR="$(BACKUP_DIR)" bash deploy/production

# A first deploy has no .env.prod: make one from .env.prod.example with new random secrets, readable by you only.
$(PROD_ENV):
	@DOMAIN="$(DOMAIN)" CADDY_TLS="$(CADDY_TLS)" $(PRODUCTION) env

.PHONY: prod-env
prod-env: ## write .env.prod with fresh random secrets, e.g. make prod-env DOMAIN=example.com CADDY_TLS=you@example.com
	@if [ -e $(PROD_ENV) ]; then \
	  echo "$(PROD_ENV) exists and is kept: Postgres and Redis data were set up with its passwords"; \
	  echo "(before a first deploy only: delete it and run make prod-env again)"; exit 1; fi
	@$(MAKE) --no-print-directory $(PROD_ENV)

.PHONY: prod-config
prod-config: ## render and validate docker-compose.prod.yml against its rules (with .env.prod, else the example)
	$(PROD_COMPOSE) config -q
	@$(PROD_COMPOSE) config --format json \
	  | docker run --rm -i --network none -v "$(CURDIR)/tools/smoke:/smoke:ro" $(PYTHON_IMAGE) python /smoke/prod_config_check.py

.PHONY: prod-build
prod-build: $(PROD_ENV) ## build the production images
	$(PROD_COMPOSE) build $(ARGS)

.PHONY: prod-up
prod-up: $(PROD_ENV) ## build, migrate and start the production stack, wait until all is healthy (ARGS="--scale worker=2")
	@$(PRODUCTION) up $(ARGS)

.PHONY: prod-roll
prod-roll: $(PROD_ENV) ## upgrade with no downtime: build, migrate, start new web containers beside the old, retire the old, then the rest
	@$(PRODUCTION) roll $(ARGS)

.PHONY: prod-down
prod-down: ## stop and remove the production containers (the data volumes stay)
	$(PROD_COMPOSE) --profile "*" down --remove-orphans

.PHONY: prod-logs
prod-logs: ## follow the production logs (ARGS="worker" for one service)
	$(PROD_COMPOSE) logs -f --tail 100 $(ARGS)

.PHONY: prod-ps
prod-ps: ## list the production containers and their health
	$(PROD_COMPOSE) ps -a

.PHONY: prod-manage
prod-manage: ## a manage.py command in the production web container, e.g. make prod-manage ARGS=createsuperuser
	$(PROD_COMPOSE) exec web python manage.py $(ARGS)

.PHONY: prod-backup
prod-backup: ## dump the production database (pg_dump custom format) into backups/, or FILE=path
	@$(PRODUCTION) backup $(FILE)

.PHONY: prod-restore
prod-restore: ## replace the production database with a prod-backup file: make prod-restore FILE=backups/<name>.dump
	@$(PRODUCTION) restore $(FILE)

.PHONY: prod-smoke
prod-smoke: $(PROD_ENV) ## CI: start the production stack and check it end to end (it restores a backup: not on a live site)
	@$(MAKE) --no-print-directory prod-up
	PROD_COMPOSE="$(PROD_COMPOSE)" PROD_ENV="$(abspath $(PROD_ENV))" bash tools/smoke/prod-smoke

.PHONY: prod-clean
prod-clean: ## DELETE the production stack and its data (database, Redis, certificates): make prod-clean CONFIRM=yes
	@[ "$(CONFIRM)" = yes ] || { echo "this deletes the production database and certificates: make prod-clean CONFIRM=yes"; exit 1; }
	$(PROD_COMPOSE) --profile "*" down --volumes --remove-orphans

# --- Docker Swarm: deploy/swarm/stack.yml, the production stack on a cluster (deploy/README.md, "Docker Swarm") ---
SWARM_STACK ?= django-celery-stack-swarm
# The swarm's service VIPs and ingress ports are built on the kernel's IPVS; where the Docker host has none
# (some CI runners and sandboxed VMs), deploy/swarm/no-ipvs.yml is layered on. Set yes or no to decide yourself.
SWARM_NO_IPVS ?= $(shell [ "$$(uname -s)" != Linux ] || [ -e /proc/net/ip_vs ] \
	|| [ -d "/lib/modules/$$(uname -r)/kernel/net/netfilter/ipvs" ] || echo yes)
# A registry the swarm's nodes pull from (a swarm of more than one node needs one): the images are pushed there.
REGISTRY ?=
SWARM_VARS = SWARM_STACK="$(SWARM_STACK)" SWARM_ENV="$(PROD_ENV)" SWARM_NO_IPVS="$(SWARM_NO_IPVS)" REGISTRY="$(REGISTRY)"
SWARM = $(SWARM_VARS) bash deploy/swarm/stack

.PHONY: swarm-up
swarm-up: $(PROD_ENV) ## deploy the production stack on a Docker Swarm (a single-node one if none), wait until healthy
	$(SWARM) up

.PHONY: swarm-roll
swarm-roll: $(PROD_ENV) ## rolling update of the swarm stack to a new build: migrations first, web and workers one by one
	$(SWARM) roll

.PHONY: swarm-smoke
swarm-smoke: $(PROD_ENV) ## CI: check the running swarm stack end to end, then roll it under load (not on a live site)
	$(SWARM_VARS) bash tools/smoke/swarm-smoke

.PHONY: swarm-ps
swarm-ps: ## list the swarm stack's services and tasks
	docker stack services $(SWARM_STACK)
	docker stack ps --no-trunc --format 'table {{.Name}}\t{{.Image}}\t{{.CurrentState}}\t{{.Error}}' $(SWARM_STACK)

.PHONY: swarm-down
swarm-down: ## remove the swarm stack, its secrets and images; leave the swarm if swarm-up made it (data volumes stay)
	$(SWARM) down

.PHONY: swarm-clean
swarm-clean: ## DELETE the swarm stack and its data volumes: make swarm-clean CONFIRM=yes
	@[ "$(CONFIRM)" = yes ] || { echo "this deletes the swarm stack's database and certificates: make swarm-clean CONFIRM=yes"; exit 1; }
	$(SWARM) clean

# --- Kubernetes: deploy/kubernetes/, Kustomize (deploy/kubernetes/README.md). No cluster is needed to check it ---
.PHONY: k8s-check
k8s-check: .env ## render both Kustomize overlays, validate every object (two Kubernetes versions, KEDA's schema) and the app's settings
	@$(COMPOSE) build --quiet web
	$(COMPOSE) run --rm --no-deps --entrypoint "" --user 0:0 -e HOME=/root -v "$(CURDIR):/src:ro" \
	  -v k8s-check-pip-cache:/root/.cache/pip -w /src web bash tools/kubernetes/check
