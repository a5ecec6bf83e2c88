# tingshuo: the two commands.
#   make run    install what is missing, build, start the server (embedded engines)
#   make test   install what is missing (test tools too), build, run every test
# Both are safe to repeat: installed packages and finished builds are skipped.

JOBS ?= $(shell nproc)
ARGS ?=

.PHONY: run test deps deps-test build build-asan clean

run: deps build
	./build/tingshuo serve $(ARGS)

test: deps-test build build-asan
	cd build && ctest --output-on-failure -j $(JOBS) -L unit
	cd build && ctest --output-on-failure -LE unit
	cd build-asan && ctest --output-on-failure -j $(JOBS) -L unit
	cd build-asan && ctest --output-on-failure -LE unit

deps:
	@scripts/deps.sh run

deps-test:
	@scripts/deps.sh test

build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j $(JOBS)

build-asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTINGSHUO_SANITIZE=ON >/dev/null
	cmake --build build-asan -j $(JOBS)

clean:
	rm -rf build build-asan
