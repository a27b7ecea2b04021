"""The store tier's guard fires: a store test that asks for a Ray cluster fails, naming where it belongs."""
import pytest


def test_ray_head_fails_in_the_store_tier(request):
    with pytest.raises(pytest.fail.Exception, match=r"^store tests start no Ray: this test asks for ray_head "
                                                    r"\(a Ray cluster\): move it to tests/integration$"):
        request.getfixturevalue("ray_head")
