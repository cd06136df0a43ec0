"""How a channel's proxy process is started: ``calipso_proxy.launcher``
plugins, chosen by ``[controller] launcher``."""

from stevedore import driver

NAMESPACE = 'calipso_proxy.launcher'


def get_launcher(conf, **kwargs):
    """The launcher plugin of ``[controller] launcher``, made with
    ``(conf, **kwargs)``."""
    return driver.DriverManager(NAMESPACE, conf.controller.launcher,
                                invoke_on_load=True, invoke_args=(conf,),
                                invoke_kwds=kwargs).driver
