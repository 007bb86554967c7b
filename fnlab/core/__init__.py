"""Foundation layer: name -> class registries with parameter specs (``registry``), the one file layer
(``files``: atomic writes, safe readers, one NaN policy, locks), device choice (``device``) and the pair
status names and colours (``status``). Imports nothing else from fnlab."""
