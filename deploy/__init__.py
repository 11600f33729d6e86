"""deploy: packaging the service (`package`: the Bento with the champion bundled) and building its OCI image with
buildah (`container`). Nothing here is packed into the image it builds."""
