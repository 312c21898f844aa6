"""What labelsift's wheel ships: the library, not the servers its tests run against."""

from pathlib import Path

import setuptools

import labelsift_testing

ROOT = Path(__file__).resolve().parents[1]
TEST_SERVERS = {"fake_rekognition", "fake_custom_labels", "s3_server"}


def test_the_wheel_holds_no_test_servers() -> None:
    packages = setuptools.find_packages(where=str(ROOT / "src"))  # as [tool.setuptools.packages.find]
    assert {"labelsift", "labelsift.manifest", "labelsift.exporters"} <= set(packages)
    modules = {
        path.stem for package in packages for path in (ROOT / "src" / package.replace(".", "/")).glob("*.py")
    }
    assert not modules & TEST_SERVERS
    assert not any(package.startswith("labelsift_testing") for package in packages)


def test_the_suite_imports_the_test_servers_from_tests_support() -> None:
    here = Path(labelsift_testing.__file__).resolve()
    assert here.is_relative_to(ROOT / "tests" / "support")
    assert {path.stem for path in here.parent.glob("*.py")} >= TEST_SERVERS


def test_every_submodule_of_a_package_is_reachable_as_a_module() -> None:
    # a package that exports a function named like one of its modules hides the module:
    # `import labelsift.manifest.merge as m` would give the function, and patching it fails
    import importlib
    import pkgutil
    from types import ModuleType

    for name in ("labelsift.manifest", "labelsift.storage", "labelsift.scanning", "labelsift.exporters"):
        package = importlib.import_module(name)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{name}.{info.name}")
            assert isinstance(getattr(package, info.name), ModuleType), f"{name}.{info.name}"
