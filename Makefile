# The two commands a newcomer needs: `make dev` and `make test`.
.PHONY: dev test bootstrap build bench timing profile admin-token

dev:        ## start the service on http://127.0.0.1:8787 (codes on the console)
	scripts/dev.sh

test:       ## run every test (installs what is missing first)
	scripts/test.sh

bootstrap:  ## install the toolchain pieces; a no-op when present
	scripts/bootstrap.sh

build:      ## release build of the Worker into build/
	scripts/build.sh

bench:      ## benchmark: flows against the no-op baseline; writes BENCHMARKS.md
	scripts/bench.sh

timing:     ## latency of logins for registered vs unknown destinations; its section of BENCHMARKS.md
	scripts/timing.sh

profile:    ## where a login's CPU goes: V8 profile (flame graph in bench/) and its section of BENCHMARKS.md
	scripts/profile.sh

admin-token: ## mint an admin API token: make admin-token ID=support SCOPES="users:read audit:read"
	scripts/admin-token.sh $(ID) $(SCOPES)
