"""The entry points a notebook user needs are on the package itself."""

import fnlab


def test_public_api_names_resolve():
    for name in fnlab.__all__:
        assert getattr(fnlab, name) is not None, name
    assert "fne" in fnlab.samplers.available() and "triplet" in fnlab.losses.available()
    assert fnlab.posterior.available()[0] == "pu"
    ds = fnlab.load_dataset("shapes", split="val", n_train=20, n_val=12, n_test=12)
    assert ds.n_a == 12
    try:
        fnlab.nope  # noqa: B018
    except AttributeError as err:
        assert "nope" in str(err)
    else:
        raise AssertionError("unknown attribute did not raise")
