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
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# A fresh clone has no .env: make one from .env.example with new random secrets.
.env:
	@secret() { LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c "$$1"; }; \
	sed -e "s|^DJANGO_SECRET_KEY=.*|DJANGO_SECRET_KEY=$$(secret 50)|" \
	    -e "s|^POSTGRES_PASSWORD=.*|POSTGRES_PASSWORD=$$(secret 32)|" \
	    -e "s|^FLOWER_PASSWORD=.*|FLOWER_PASSWORD=$$(secret 24)|" .env.example > .env
	@echo "wrote .env with fresh random secrets"

.PHONY: build
build: .env ## build the development image
	$(COMPOSE) build

.PHONY: up
up: .env ## build, start every service, wait until all are healthy, print the URLs
	$(COMPOSE) up -d --build --wait --wait-timeout 180
	@. ./.env; \
	echo ""; \
	echo "  Django   http://localhost:$${WEB_PORT:-8000}/        (admin: /admin/, create a user with 'make createsuperuser')"; \
	echo "  Flower   http://localhost:$${FLOWER_PORT:-5555}/    (user $$FLOWER_USER, password FLOWER_PASSWORD in .env)"; \
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
test: .env ## run the tests in a container, with a real gevent worker, Postgres and Redis
	$(COMPOSE) build web
	$(COMPOSE) up -d --wait postgres redis
	@$(COMPOSE) exec -T postgres sh -c 'psql -U "$$POSTGRES_USER" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '"'"'$${POSTGRES_DB}_test'"'"'" | grep -q 1 || createdb -U "$$POSTGRES_USER" "$${POSTGRES_DB}_test"'
	@$(COMPOSE) exec -T redis redis-cli -n 1 FLUSHDB >/dev/null  # the test broker: nothing left from an interrupted run
	$(COMPOSE) --profile test up -d --wait test-worker
	@started=$$(date -u +%Y-%m-%dT%H:%M:%SZ); status=0; \
	$(COMPOSE) --profile test run --rm test pytest $(ARGS) || status=$$?; \
	if $(COMPOSE) logs --no-log-prefix --since "$$started" test-worker 2>&1 | grep -n "DatabaseError"; then \
	  echo "the test worker logged a DatabaseError (above)"; status=1; \
	else echo "the test worker logged no DatabaseError"; fi; \
	$(COMPOSE) --profile test stop test-worker >/dev/null 2>&1; \
	exit $$status

.PHONY: smoke
smoke: .env ## check the running stack (make up first) from inside its network
	@unhealthy=$$($(COMPOSE) ps --format '{{.Service}} {{.Health}}' web worker beat flower postgres redis | grep -v ' healthy$$' || true); \
	if [ -n "$$unhealthy" ]; then echo "not healthy: $$unhealthy (run make up)"; exit 1; fi
	$(COMPOSE) --profile smoke run --rm smoke

.PHONY: bench
bench: up ## benchmark workers by pool and workload, and the web tier; prints a table, writes bench-results/*.json
	@mkdir -p bench-results && chmod 777 bench-results
	$(COMPOSE) --profile bench run --rm bench

.PHONY: lint
lint: .env ## ruff, mypy, makemigrations --check, compose config, shellcheck, hadolint
	@$(COMPOSE) build --quiet web
	$(COMPOSE) config -q
	$(COMPOSE) -f docker-compose.prod.yml --env-file .env.prod.example config -q
	$(TOOLS) web bash -euo pipefail -c '\
	  ruff check . && ruff format --check . && mypy && \
	  (cd app && python -W ignore manage.py makemigrations --check --dry-run) && \
	  shellcheck compose/django/entrypoint compose/django/healthcheck compose/django/start-* .ci/run && \
	  hadolint compose/Dockerfile && echo "lint: all clean"'

.PHONY: fmt
fmt: .env ## format and autofix with ruff
	@$(COMPOSE) build --quiet web
	$(TOOLS) --user "$(HOST_USER)" web bash -c 'ruff format . && ruff check --fix .'

.PHONY: clean
clean: ## remove containers, volumes and the locally built images
	$(COMPOSE) --profile "*" down --volumes --remove-orphans --rmi local
